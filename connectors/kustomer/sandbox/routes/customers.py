"""Customers and companies (kustomer-api.md §2.1, §2.2)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from connectors.kustomer.sandbox.envelopes import single
from connectors.kustomer.sandbox.errors import SandboxError
from connectors.kustomer.sandbox.resources import phone_key
from connectors.kustomer.sandbox.routes.common import authorize, json_body, path_value, write_context
from connectors.kustomer.sandbox.routes.crud import Crud, list_response, method_not_allowed
from connectors.kustomer.sandbox.routes.klasses import kobject_create, kobject_list_for
from connectors.kustomer.sandbox.store import Record

__all__ = ["build_router"]

CUSTOMERS = Crud("customer", "/v1/customers", "customer")


def _company_filter(request: Request) -> Callable[[Record], bool] | None:
    """``externalId`` (exact) or ``filter`` (name contains); both given -> both ignored (documented)."""
    ext = request.query_params.get("externalId")
    text = request.query_params.get("filter")
    if ext and text:
        return None
    if ext:
        return lambda r: r.attrs.get("externalId") == ext
    if text:
        needle = text.lower()
        return lambda r: needle in str(r.attrs.get("name") or "").lower()
    return None


COMPANIES = Crud("company", "/v1/companies", "company", where=_company_filter)


def _lookup(kind: str) -> Callable[[Request], Awaitable[Response]]:
    async def handler(request: Request) -> Response:
        sb, _ = authorize(request, "customer.read")
        value = path_value(request)
        key = value.lower() if kind == "email" else phone_key(value) if kind == "phone" else value
        found = sb.customer_type.coll.lookup(kind, key)
        if not found:
            raise SandboxError(404, f"No customer with {kind} {value!r}")
        return single(sb.customer_type.render(found[0]))

    handler.__name__ = f"customer_by_{kind}"
    return handler


async def customer_conversations(request: Request) -> Response:
    """``GET /v1/customers/{id}/conversations`` (``page``, ``pageSize``, ``fromDate``, ``sort``)."""
    sb, _ = authorize(request, "conversation.read")
    customer = sb.customer_type.get_or_404(request.path_params["id"])
    rt = sb.conversation_type
    return list_response(request, rt, subset=rt.coll.related("customer", customer.id))


async def customer_create_conversation(request: Request) -> Response:
    """``POST /v1/customers/{id}/conversations``."""
    sb, principal = authorize(request, "conversation.create")
    customer = sb.customer_type.get_or_404(request.path_params["id"])
    rt = sb.conversation_type
    body = await json_body(request)
    ctx = write_context(sb, principal, forced={"customer": customer.id})
    return single(rt.render(rt.commit(rt.plan_create(body, ctx))), status=201)


async def customer_messages(request: Request) -> Response:
    """``GET /v1/customers/{id}/messages``."""
    sb, _ = authorize(request, "message.read")
    customer = sb.customer_type.get_or_404(request.path_params["id"])
    rt = sb.types["message"]
    return list_response(request, rt, subset=rt.coll.related("customer", customer.id))


async def customer_create_message(request: Request) -> Response:
    """``POST /v1/customers/{id}/messages``: without ``conversation``, a new conversation is created."""
    sb, principal = authorize(request, "message.create")
    customer = sb.customer_type.get_or_404(request.path_params["id"])
    rt = sb.types["message"]
    body = await json_body(request)
    ctx = write_context(sb, principal, forced={"customer": customer.id})
    return single(rt.render(rt.commit(rt.plan_create(body, ctx))), status=201)


async def customer_notes(request: Request) -> Response:
    """``GET /v1/customers/{id}/notes``."""
    sb, _ = authorize(request, "note.read")
    customer = sb.customer_type.get_or_404(request.path_params["id"])
    rt = sb.types["note"]
    return list_response(request, rt, subset=rt.coll.related("customer", customer.id))


async def customer_kobjects(request: Request) -> Response:
    """``GET /v1/customers/{id}/klasses/{name}``."""
    sb, _ = authorize(request, "customer.read", extra=("org.permission.kobject.read", "org.user.kobject.read"))
    customer = sb.customer_type.get_or_404(request.path_params["id"])
    return kobject_list_for(request, "customer", customer.id)


async def customer_create_kobject(request: Request) -> Response:
    """``POST /v1/customers/{id}/klasses/{name}``."""
    sb = authorize(request, "kobject.create")[0]
    customer = sb.customer_type.get_or_404(request.path_params["id"])
    return await kobject_create(request, forced={"customer": customer.id})


async def company_kobjects(request: Request) -> Response:
    """``GET /v1/companies/{id}/klasses/{name}``."""
    sb, _ = authorize(request, "company.read", extra=("org.permission.kobject.read", "org.user.kobject.read"))
    company = sb.types["company"].get_or_404(request.path_params["id"])
    return kobject_list_for(request, "company", company.id)


async def company_patch(request: Request) -> Response:
    """``PATCH /v1/companies/{id}``: only when ``company_delete_supported`` (not in Kustomer's spec)."""
    sb, _ = authorize(request, "company.update")
    if not sb.settings.company_delete_supported:
        raise method_not_allowed()
    return await COMPANIES.patch(request)


async def company_delete(request: Request) -> Response:
    """``DELETE /v1/companies/{id}``: only when ``company_delete_supported`` (not in Kustomer's spec)."""
    sb, principal = authorize(request, "company.delete")
    if not sb.settings.company_delete_supported:
        raise method_not_allowed()
    rt = sb.types["company"]
    company = rt.get_or_404(request.path_params["id"])
    ctx = write_context(sb, principal)
    rt.delete(company, ctx)
    customers = sb.customer_type
    for customer in customers.coll.related("company", company.id):
        with customers.coll.updating(customer):
            customer.rels = {**customer.rels, "company": None}
    return Response(status_code=204)


def build_router() -> APIRouter:
    """Customer and company routes (literal paths before ``{id}``)."""
    router = APIRouter(tags=["customers"])
    CUSTOMERS.add_collection_routes(router)
    for kind in ("email", "phone", "externalId"):
        router.add_api_route(
            f"/v1/customers/{kind}={{value}}", _lookup(kind), methods=["GET"], summary=f"Customer by {kind}"
        )
    CUSTOMERS.add_item_routes(router)
    sub = "/v1/customers/{id}"
    router.add_api_route(f"{sub}/conversations", customer_conversations, methods=["GET"])
    router.add_api_route(f"{sub}/conversations", customer_create_conversation, methods=["POST"])
    router.add_api_route(f"{sub}/messages", customer_messages, methods=["GET"])
    router.add_api_route(f"{sub}/messages", customer_create_message, methods=["POST"])
    router.add_api_route(f"{sub}/notes", customer_notes, methods=["GET"])
    router.add_api_route(f"{sub}/klasses/{{name}}", customer_kobjects, methods=["GET"])
    router.add_api_route(f"{sub}/klasses/{{name}}", customer_create_kobject, methods=["POST"])
    COMPANIES.add_collection_routes(router)
    COMPANIES.add_item_routes(router, ops=("get", "put"))
    router.add_api_route("/v1/companies/{id}", company_patch, methods=["PATCH"])
    router.add_api_route("/v1/companies/{id}", company_delete, methods=["DELETE"])
    router.add_api_route("/v1/companies/{id}/klasses/{name}", company_kobjects, methods=["GET"])
    return router
