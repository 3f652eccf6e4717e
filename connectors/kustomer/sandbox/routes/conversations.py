"""Conversations, messages and notes (kustomer-api.md §2.3-§2.5)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from connectors.kustomer.custom_fields import is_object_id
from connectors.kustomer.sandbox.envelopes import single
from connectors.kustomer.sandbox.errors import SandboxError
from connectors.kustomer.sandbox.routes.common import authorize, json_body, path_value, write_context
from connectors.kustomer.sandbox.routes.crud import Crud, list_response

__all__ = ["build_router"]

CONVERSATIONS = Crud("conversation", "/v1/conversations", "conversation")
MESSAGES = Crud("message", "/v1/messages", "message")
NOTES = Crud("note", "/v1/notes", "note")


def _by_external_id(crud: Crud) -> Callable[[Request], Awaitable[Response]]:
    async def handler(request: Request) -> Response:
        sb, _ = authorize(request, f"{crud.roles}.read")
        rt = sb.types[crud.type]
        value = path_value(request)
        found = rt.coll.lookup("externalId", value)
        if not found:
            raise SandboxError(404, f"No {crud.type} with externalId {value!r}")
        return single(rt.render(found[0]))

    handler.__name__ = f"{crud.type}_by_external_id"
    return handler


def _children(
    kind: str,
) -> tuple[Callable[[Request], Awaitable[Response]], Callable[[Request], Awaitable[Response]]]:
    """``GET``/``POST /v1/conversations/{id}/<kind>s`` handlers."""

    async def list_children(request: Request) -> Response:
        sb, _ = authorize(request, f"{kind}.read")
        conversation = sb.conversation_type.get_or_404(request.path_params["id"])
        rt = sb.types[kind]
        return list_response(request, rt, subset=rt.coll.related("conversation", conversation.id))

    async def create_child(request: Request) -> Response:
        sb, principal = authorize(request, f"{kind}.create")
        conversation = sb.conversation_type.get_or_404(request.path_params["id"])
        rt = sb.types[kind]
        body = await json_body(request)
        ctx = write_context(sb, principal, forced={"conversation": conversation.id})
        return single(rt.render(rt.commit(rt.plan_create(body, ctx))), status=201)

    list_children.__name__ = f"conversation_{kind}s"
    create_child.__name__ = f"conversation_create_{kind}"
    return list_children, create_child


def _tag_names(body: Any, sb_tags: dict[str, str]) -> list[str]:
    raw = body.get("tags") if isinstance(body, dict) else body
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw or not all(isinstance(t, str) and t for t in raw):
        raise SandboxError(400, 'Send {"tags": ["<tag name or id>", ...]}', pointer="/tags")
    return [sb_tags.get(t, t) if is_object_id(t) else t for t in raw]


async def _change_tags(request: Request, *, add: bool) -> Response:
    sb, principal = authorize(request, "conversation.update" if add else "conversation.tags.remove")
    rt = sb.conversation_type
    conversation = rt.get_or_404(request.path_params["id"])
    body = await json_body(request)
    ids_to_names = {r.id: str(r.attrs.get("name")) for r in sb.state.tags}
    names = _tag_names(body, ids_to_names)
    current = list(conversation.attrs.get("tags") or [])
    if add:
        tags = current + [n for n in names if n not in current]
    else:
        drop = {n.lower() for n in names}
        tags = [t for t in current if t.lower() not in drop]
    ctx = write_context(sb, principal)
    rt.commit(rt.plan_update(conversation, {"tags": tags}, ctx))
    return single(rt.render(conversation))


async def add_tags(request: Request) -> Response:
    """``POST /v1/conversations/{id}/tags``: append tags by name (or id); unknown names create tags."""
    return await _change_tags(request, add=True)


async def remove_tags(request: Request) -> Response:
    """``DELETE /v1/conversations/{id}/tags``: remove tags by name (or id)."""
    return await _change_tags(request, add=False)


def build_router() -> APIRouter:
    """Conversation, message and note routes."""
    router = APIRouter(tags=["conversations"])
    CONVERSATIONS.add_collection_routes(router)
    router.add_api_route("/v1/conversations/externalId={value}", _by_external_id(CONVERSATIONS), methods=["GET"])
    CONVERSATIONS.add_item_routes(router)
    for kind in ("message", "note"):
        list_children, create_child = _children(kind)
        router.add_api_route(f"/v1/conversations/{{id}}/{kind}s", list_children, methods=["GET"])
        router.add_api_route(f"/v1/conversations/{{id}}/{kind}s", create_child, methods=["POST"])
    router.add_api_route("/v1/conversations/{id}/tags", add_tags, methods=["POST"])
    router.add_api_route("/v1/conversations/{id}/tags", remove_tags, methods=["DELETE"])
    MESSAGES.add_collection_routes(router)
    for spelling in ("externalid", "externalId"):
        router.add_api_route(f"/v1/messages/{spelling}={{value}}", _by_external_id(MESSAGES), methods=["GET"])
    MESSAGES.add_item_routes(router, ops=("get", "put", "patch"))
    NOTES.add_collection_routes(router)
    NOTES.add_item_routes(router)
    return router
