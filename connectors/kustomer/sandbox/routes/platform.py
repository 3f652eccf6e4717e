"""Search, bulk, outbound webhooks and inbound web hooks (kustomer-api.md §2.8-§2.11)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from connectors.kustomer.sandbox.bulk import Method
from connectors.kustomer.sandbox.envelopes import list_body, page_params, single
from connectors.kustomer.sandbox.errors import SandboxError
from connectors.kustomer.sandbox.hooks import parse_hook_body, record_transaction
from connectors.kustomer.sandbox.routes.common import authorize, get_sandbox, json_body, query_bool
from connectors.kustomer.sandbox.routes.crud import Crud
from connectors.kustomer.sandbox.store import Record
from connectors.kustomer.sandbox.timeutil import iso

__all__ = ["build_bulk_router", "build_platform_router", "build_search_router"]

OUTBOUND = Crud("outbound_webhook", "/v1/outbound-webhooks", "outbound_webhook")
WEB_HOOKS = Crud("web_hook", "/v1/hooks/web", "hook")
_BULK_RESOURCES = {
    "customers": "customer",
    "companies": "company",
    "conversations": "conversation",
    "messages": "message",
    "notes": "note",
}
_ACTIONS: dict[str, str] = {"POST": "create", "PUT": "update", "DELETE": "delete"}


# -- search --------------------------------------------------------------------------------------------------
async def _search(request: Request, *, archive: bool) -> Response:
    sb, _ = authorize(request, "search")
    page, size = page_params(request, max_size=sb.settings.search_max_page_size, style="simple")
    try:
        ids_only = query_bool(request, "idsOnly")
    except SandboxError as exc:
        raise exc.with_style("simple") from None
    body = await json_body(request, style="simple")
    type_, result = sb.search.run(body, page=page, size=size, archive=archive)
    if ids_only:
        data = [{"type": r.type, "id": r.id} for r in result.records]
    else:
        rt = sb.types[type_]
        data = [rt.render(r) for r in result.records]
    keep = ["idsOnly"] if ids_only else []
    return JSONResponse(list_body(request, data, page=page, size=size, total=result.total, keep_params=keep))


async def search(request: Request) -> Response:
    """``POST /v1/customers/search``."""
    return await _search(request, archive=False)


async def archive_search(request: Request) -> Response:
    """``POST /v1/customers/archive/search``."""
    return await _search(request, archive=True)


def build_search_router() -> APIRouter:
    """Search routes (before ``/v1/customers/{id}``)."""
    router = APIRouter(tags=["search"])
    router.add_api_route("/v1/customers/search", search, methods=["POST"], summary="Search (all contexts)")
    router.add_api_route("/v1/customers/archive/search", archive_search, methods=["POST"], summary="Archive search")
    return router


# -- bulk ----------------------------------------------------------------------------------------------------
def _bulk(resource: str, method: Method, *, klass_path: bool) -> Callable[[Request], Awaitable[Response]]:
    action = _ACTIONS[method]

    async def handler(request: Request) -> Response:
        if klass_path:
            name = request.path_params["name"]
            sb, principal = authorize(
                request, f"kobject.{action}", extra=(f"org.permission.kobject.kobject_{name}.{action}",)
            )
            klass = sb.state.klass_by_name(name)
            if klass is None:
                raise SandboxError(404, f"Klass {name!r} not found", style="simple")
        else:
            sb, principal = authorize(request, f"{resource}.{action}")
            klass = None
        raw_ids = request.query_params.get("ids")
        ids = [i.strip() for i in raw_ids.split(",") if i.strip()] if raw_ids else None
        raw = await request.body()
        body: Any = None
        if raw.strip():
            try:
                body = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise SandboxError(400, f"Invalid JSON body: {exc}", style="simple") from None
        elif not (method == "DELETE" and ids):
            raise SandboxError(400, "The request body must be a JSON array", style="simple")
        job = sb.bulk.submit(
            resource="kobject" if klass_path else resource,
            method=method,
            path=request.url.path,
            body=body,
            ids=ids,
            principal=principal,
            klass=klass,
        )
        return JSONResponse({"data": sb.bulk.render(job)}, status_code=201)

    handler.__name__ = f"bulk_{method.lower()}_{'kobject' if klass_path else resource}"
    return handler


async def bulk_get(request: Request) -> Response:
    """``GET /v1/bulk/{id}``: status and ``batches{complete,total}``."""
    sb, _ = authorize(request, "bulk.read")
    job = sb.state.bulk_jobs.get(request.path_params["id"])
    if job is None:
        raise SandboxError(404, "Bulk operation not found", style="simple")
    return JSONResponse({"data": sb.bulk.render(job)})


async def bulk_batches(request: Request) -> Response:
    """``GET /v1/bulk/{id}/batches``: per-batch counts, object ids, errors and ``_clientRef`` results."""
    sb, _ = authorize(request, "bulk.read")
    job = sb.state.bulk_jobs.get(request.path_params["id"])
    if job is None:
        raise SandboxError(404, "Bulk operation not found", style="simple")
    data = [sb.bulk.render_batch(job, batch) for batch in job.batches]
    return JSONResponse(list_body(request, data, page=1, size=max(1, len(data)), total=len(data)))


def build_bulk_router() -> APIRouter:
    """Bulk routes (before the ``{id}`` routes of their resources)."""
    router = APIRouter(tags=["bulk"])
    for path, resource in _BULK_RESOURCES.items():
        methods: tuple[Method, ...] = ("POST", "PUT", "DELETE") if path == "customers" else ("POST", "PUT")
        for method in methods:
            router.add_api_route(
                f"/v1/{path}/bulk",
                _bulk(resource, method, klass_path=False),
                methods=[method],
                summary=f"Bulk {method}",
            )
    kobject_methods: tuple[Method, ...] = ("POST", "PUT", "DELETE")
    for method in kobject_methods:
        router.add_api_route("/v1/klasses/{name}/bulk", _bulk("kobject", method, klass_path=True), methods=[method])
    router.add_api_route("/v1/bulk/{id}", bulk_get, methods=["GET"])
    router.add_api_route("/v1/bulk/{id}/batches", bulk_batches, methods=["GET"])
    return router


# -- outbound webhooks and web hooks -------------------------------------------------------------------------
async def webhook_events(request: Request) -> Response:
    """``GET /v1/outbound-webhooks/events``: ``{"events": [...]}``."""
    sb, _ = authorize(request, "outbound_webhook.read")
    return JSONResponse({"events": list(sb.webhooks.event_names())})


async def webhook_transactions(request: Request) -> Response:
    """``GET /v1/outbound-webhooks/{id}/transactions``: recorded delivery attempts, newest first."""
    sb, _ = authorize(request, "outbound_webhook.read")
    hook = sb.types["outbound_webhook"].get_or_404(request.path_params["id"])
    attempts = list(reversed(sb.webhooks.deliveries_for(hook.id)))
    data = [
        {
            "type": "outbound_webhook_transaction",
            "id": f"{a.delivery_id}-{a.attempt}",
            "attributes": {
                "event": a.event,
                "eventId": a.event_id,
                "attempt": a.attempt,
                "url": a.url,
                "statusCode": a.status_code,
                "error": a.error,
                "success": a.ok,
                "createdAt": iso(round(a.at * 1000)),
            },
        }
        for a in attempts
    ]
    return JSONResponse(list_body(request, data, page=1, size=max(1, len(data)), total=len(data)))


def _hook_by_hash(request: Request) -> Record:
    sb = get_sandbox(request)
    found = sb.state.web_hooks.lookup("hash", request.path_params["hash"])
    if not found or not found[0].attrs.get("enabled", True):
        raise SandboxError(404, "Hook not found")
    return found[0]


async def hook_post(request: Request) -> Response:
    """``POST /v1/hooks/web/{hash}``: record a transaction (role ``org.hooks``)."""
    sb, _ = authorize(request, "hook.post")
    hook = _hook_by_hash(request)
    data = await parse_hook_body(request)
    return single(record_transaction(sb, hook, data))


def build_platform_router() -> APIRouter:
    """Outbound webhook and web hook routes."""
    router = APIRouter(tags=["webhooks"])
    OUTBOUND.add_collection_routes(router)
    router.add_api_route("/v1/outbound-webhooks/events", webhook_events, methods=["GET"])
    OUTBOUND.add_item_routes(router)
    router.add_api_route("/v1/outbound-webhooks/{id}/transactions", webhook_transactions, methods=["GET"])
    WEB_HOOKS.add_collection_routes(router)
    WEB_HOOKS.add_item_routes(router, ops=("get",))
    router.add_api_route("/v1/hooks/web/{hash}", hook_post, methods=["POST"], summary="Post to a web hook")
    return router
