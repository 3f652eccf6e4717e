"""Users, teams, tags and auth-token introspection (kustomer-api.md §1.3, §2.6)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from connectors.kustomer.sandbox.auth import DEFAULT_DEMO_ROLES
from connectors.kustomer.sandbox.envelopes import list_body, single
from connectors.kustomer.sandbox.errors import SandboxError
from connectors.kustomer.sandbox.resources import rel_object
from connectors.kustomer.sandbox.routes.common import authorize, json_body, query_bool, write_context
from connectors.kustomer.sandbox.routes.crud import Crud, list_response
from connectors.kustomer.sandbox.timeutil import iso

__all__ = ["build_router"]

USERS = Crud("user", "/v1/users", "user")
TEAMS = Crud("team", "/v1/teams", "team")
TAGS = Crud("tag", "/v1/tags", "tag")
_USER_FILTERS = ("pending", "deleted", "userType", "email")


async def user_list(request: Request) -> Response:
    """``GET /v1/users`` with ONE of ``pending``, ``deleted``, ``userType``, ``email`` (combining -> 400)."""
    sb, _ = authorize(request, "user.read")
    rt = sb.types["user"]
    given = [name for name in _USER_FILTERS if request.query_params.get(name) not in (None, "")]
    if len(given) > 1:
        raise SandboxError(400, f"User filters cannot be combined (got {', '.join(given)})", parameter=given[1])
    if not given:
        return list_response(request, rt)
    name = given[0]
    value = request.query_params[name]
    if name == "deleted":
        if query_bool(request, "deleted"):
            return list_response(request, rt, subset=rt.coll.tombstones.values())
        return list_response(request, rt)
    if name == "pending":
        pending = query_bool(request, "pending")
        return list_response(request, rt, where=lambda r: bool(r.attrs.get("pending")) is pending)
    if name == "userType":
        if value not in ("user", "machine", "limited", "hourly"):
            raise SandboxError(400, '"userType" must be user, machine, limited or hourly', parameter="userType")
        return list_response(request, rt, where=lambda r: r.attrs.get("userType") == value)
    return list_response(request, rt, subset=rt.coll.lookup("email", value.lower()))


async def user_current(request: Request) -> Response:
    """``GET /v1/users/current``: the key's machine user, or the user who authorised the OAuth client."""
    sb, principal = authorize(request, "any")
    rt = sb.types["user"]
    return single(rt.render(rt.get_or_404(principal.user_id)))


async def user_current_update(request: Request) -> Response:
    """``PUT /v1/users/current``."""
    sb, principal = authorize(request, "any")
    rt = sb.types["user"]
    user = rt.get_or_404(principal.user_id)
    body = await json_body(request)
    rt.commit(rt.plan_update(user, body, write_context(sb, principal)))
    return single(rt.render(user))


async def user_get(request: Request) -> Response:
    """``GET /v1/users/{id}`` or ``GET /v1/users/{id},{id},...`` (a list)."""
    sb, _ = authorize(request, "user.read")
    rt = sb.types["user"]
    raw = request.path_params["id"]
    if "," not in raw:
        return single(rt.render(rt.get_or_404(raw)))
    records = [rt.get_or_404(part.strip()) for part in raw.split(",") if part.strip()]
    body = list_body(request, [rt.render(r) for r in records], page=1, size=max(1, len(records)), total=len(records))
    return JSONResponse(body)


async def user_teams(request: Request) -> Response:
    """``GET /v1/users/{id}/teams``."""
    sb, _ = authorize(request, "team.read")
    user = sb.types["user"].get_or_404(request.path_params["id"])
    rt = sb.types["team"]
    return list_response(request, rt, where=lambda r: user.id in (r.attrs.get("members") or ()))


def _member_ids(request: Request, body: Any) -> list[str]:
    raw = body.get("members", body.get("users")) if isinstance(body, dict) else body
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw or not all(isinstance(m, str) for m in raw):
        raise SandboxError(400, 'Send {"members": ["<user id>", ...]}', pointer="/members")
    return list(raw)


async def _members(request: Request, *, add: bool) -> Response:
    sb, principal = authorize(request, "team.update")
    rt = sb.types["team"]
    team = rt.get_or_404(request.path_params["id"])
    query = request.query_params.get("members")
    body: Any = query.split(",") if query and not add else await json_body(request)
    ids = _member_ids(request, body)
    current = list(team.attrs.get("members") or [])
    members = current + [m for m in ids if m not in current] if add else [m for m in current if m not in ids]
    rt.commit(rt.plan_update(team, {"members": members}, write_context(sb, principal)))
    return single(rt.render(team))


async def add_members(request: Request) -> Response:
    """``POST /v1/teams/{id}/members`` (``{"members": [ids]}`` or a bare array)."""
    return await _members(request, add=True)


async def remove_members(request: Request) -> Response:
    """``DELETE /v1/teams/{id}/members`` (body as for POST, or ``?members=a,b``)."""
    return await _members(request, add=False)


async def token_current(request: Request) -> Response:
    """``GET /v1/auth/tokens/current``: works with any valid token, whatever its roles."""
    sb, principal = authorize(request, "any")
    token = sb.state.tokens[principal.token_id]
    org = sb.state.org.id
    return single(
        {
            "type": "auth_token",
            "id": token.id,
            "attributes": {
                "name": token.name,
                "lastTokenChars": token.last_chars,
                "roles": list(token.roles),
                "userType": principal.user_type,
                "ipAddress": None,
                "userAgent": request.headers.get("user-agent"),
                "pod": token.pod,
                "createdAt": iso(token.created_ms),
                "updatedAt": iso(token.created_ms),
                "lastAccessedAt": iso(token.last_accessed_ms) if token.last_accessed_ms else None,
                "expiresAt": iso(token.expires_ms) if token.expires_ms is not None else None,
            },
            "relationships": {"org": rel_object("org", org), "user": rel_object("user", token.user_id)},
            "links": {"self": "/v1/auth/tokens/current"},
        }
    )


async def token_current_delete(request: Request) -> Response:
    """``DELETE /v1/auth/tokens/current``: revoke the calling token."""
    sb, principal = authorize(request, "any")
    sb.revoke_token(principal.token_id)
    return Response(status_code=204)


async def roles_list(request: Request) -> Response:
    """``GET /v1/auth/roles``: every role the sandbox knows, as ``{type: "role", id}``."""
    authorize(request, "any")
    return JSONResponse({"data": [{"type": "role", "id": role} for role in DEFAULT_DEMO_ROLES]})


def build_router() -> APIRouter:
    """User, team, tag and auth routes."""
    router = APIRouter(tags=["people"])
    router.add_api_route("/v1/users", user_list, methods=["GET"], summary="List users")
    router.add_api_route("/v1/users", USERS.create, methods=["POST"], summary="Create / invite a user")
    router.add_api_route("/v1/users/current", user_current, methods=["GET"])
    router.add_api_route("/v1/users/current", user_current_update, methods=["PUT"])
    router.add_api_route("/v1/users/{id}", user_get, methods=["GET"], summary="User(s) by id(s)")
    router.add_api_route("/v1/users/{id}", USERS.put, methods=["PUT"])
    router.add_api_route("/v1/users/{id}/teams", user_teams, methods=["GET"])
    TEAMS.add_collection_routes(router)
    TEAMS.add_item_routes(router)
    router.add_api_route("/v1/teams/{id}/members", add_members, methods=["POST"])
    router.add_api_route("/v1/teams/{id}/members", remove_members, methods=["DELETE"])
    TAGS.add_collection_routes(router, create=False)
    TAGS.add_item_routes(router, ops=("get",))
    router.add_api_route("/v1/auth/tokens/current", token_current, methods=["GET"])
    router.add_api_route("/v1/auth/tokens/current", token_current_delete, methods=["DELETE"])
    router.add_api_route("/v1/auth/roles", roles_list, methods=["GET"])
    return router
