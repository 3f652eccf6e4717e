"""``/connections``, ``/sessions``, ``/operations`` and the OAuth callback ``/oauth/callback``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic.alias_generators import to_camel
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from connectors.runtime.connector import Operation
from connectors.server.errors import HTTPProblem, validation_problem
from connectors.server.flows import (
    check_operations,
    check_return_url,
    connect_with_api_key,
    finish_oauth,
    resolve_target,
    start_oauth,
)
from connectors.server.pages import esc, render_page
from connectors.server.security import Principal, PrincipalDep, not_found, open_connection, require_operator
from connectors.server.state import server_state

__all__ = ["ConnectionCreate", "SessionCreate", "build_router", "operation_dict"]

_MODEL_CONFIG = ConfigDict(alias_generator=to_camel, validate_by_name=True, extra="forbid")


class OAuthClientBody(BaseModel):
    """A per-tenant OAuth client (whitelabel), operator only."""

    model_config = _MODEL_CONFIG

    client_id: str = Field(min_length=1, max_length=500)
    client_secret: SecretStr | None = None


class ConnectionCreate(BaseModel):
    """Body of ``POST /connections``: an API-key connection, or the start of an OAuth one."""

    model_config = _MODEL_CONFIG

    connector_id: str | None = Field(default=None, description="Connector id (default kustomer).")
    owner_id: str | None = Field(default=None, min_length=1, max_length=200, description="Owner (operator).")
    label: str = Field(default="", max_length=200, description="Tells several connections of one owner apart.")
    operations: list[str] | None = Field(default=None, max_length=500, description="Operations to allow.")
    auth_type: Literal["api_key", "oauth2"] | None = Field(default=None, description="Inferred from apiKey.")
    api_key: SecretStr | None = Field(default=None, description="A Kustomer API key (API-key connections).")
    region: str | None = Field(default=None, max_length=20, description="us, eu or in.")
    org: str | None = Field(default=None, max_length=100, description="Kustomer org subdomain (OAuth).")
    base_url: str | None = Field(default=None, max_length=500, description="Explicit API base URL (operator).")
    return_url: str | None = Field(default=None, max_length=2000, description="Where the callback sends the user.")
    oauth_client: OAuthClientBody | None = Field(default=None, description="Whitelabel OAuth client (operator).")
    settings: dict[str, Any] | None = Field(default=None, description="Connection settings (operator).")


class SessionCreate(BaseModel):
    """Body of ``POST /sessions``."""

    model_config = _MODEL_CONFIG

    owner_id: str = Field(min_length=1, max_length=200)
    operations: list[str] | None = Field(default=None, max_length=500)
    ttl_seconds: float | None = Field(default=None, gt=0)
    connector_id: str | None = None


def operation_dict(op: Operation) -> dict[str, Any]:
    """JSON form of an operation: its preferred roles and every accepted alternative."""
    return {
        "object": "operation",
        "name": op.name,
        "description": op.description,
        "roles": list(op.preferred_roles),
        "alternatives": [list(choice) for choice in op.requires],
    }


async def list_operations(
    request: Request,
    principal: PrincipalDep,
    connector_id: Annotated[str | None, Query(alias="connectorId")] = None,
    operations: Annotated[list[str] | None, Query(description="Compute the roles these need.")] = None,
) -> JSONResponse:
    """Operations of a connector with the Kustomer roles each needs (what to request or grant an API key)."""
    state = server_state(request)
    connector = connector_id or state.config.default_connector
    if connector not in state.hub.registry.connectors:
        raise not_found("connector")
    cls = state.hub.connector_class(connector)
    table = cls.operations()
    selected = None
    if operations:
        names = [n for value in operations for n in value.split(",") if n]
        selected = check_operations(state, connector, names, principal=principal, path="query.operations")
    body: dict[str, Any] = {
        "object": "list",
        "connectorId": connector,
        "data": [operation_dict(op) for name, op in table.items() if selected is None or name in selected],
        "next": None,
    }
    if selected is not None:
        body["roles"] = list(cls.roles_for(selected))
    return JSONResponse(body)


async def list_connections(
    request: Request,
    principal: PrincipalDep,
    connector_id: Annotated[str | None, Query(alias="connectorId")] = None,
) -> JSONResponse:
    """Connections of the caller's owner (an operator naming no owner sees every owner's)."""
    hub = server_state(request).hub
    infos = await hub.list(owner_id=principal.owner_id, connector_id=connector_id)
    return JSONResponse({"object": "list", "data": [i.to_dict() for i in infos], "next": None})


async def create_connection(request: Request, body: ConnectionCreate, principal: PrincipalDep) -> Response:
    """Create an API-key connection (201), or start an OAuth one (200 with ``authorizationUrl``)."""
    state = server_state(request)
    if not principal.is_operator:
        for name in ("oauth_client", "settings"):
            if getattr(body, name) is not None:
                raise HTTPProblem(
                    403, "operator_only", f"only the operator may set {to_camel(name)}", extra={"field": to_camel(name)}
                )
    target = resolve_target(
        state,
        principal,
        connector_id=body.connector_id,
        owner_id=body.owner_id,
        label=body.label,
        region=body.region,
        org=body.org,
        base_url=body.base_url,
    )
    operations = body.operations
    if operations is not None:
        operations = check_operations(
            state, target.connector_id, operations, principal=principal, path="body.operations"
        )
    elif principal.operations is not None:
        operations = list(principal.operations)
    auth_type = body.auth_type or ("api_key" if body.api_key is not None else "oauth2")
    if auth_type == "api_key":
        if body.api_key is None:
            raise validation_problem([{"path": "body.apiKey", "message": "required for an API-key connection"}])
        if body.return_url is not None:
            raise validation_problem([{"path": "body.returnUrl", "message": "only for OAuth connections"}])
        connection = await connect_with_api_key(
            state, target, api_key=body.api_key.get_secret_value(), operations=operations, settings=body.settings
        )
        return JSONResponse(connection.info.to_dict(), status_code=201)
    if body.api_key is not None:
        raise validation_problem([{"path": "body.apiKey", "message": "not used by an OAuth connection"}])
    if not operations:
        raise validation_problem([{"path": "body.operations", "message": "name the operations to authorize"}])
    return_url = check_return_url(state, body.return_url) if body.return_url is not None else None
    client = None
    if body.oauth_client is not None:
        secret = body.oauth_client.client_secret
        client = {
            "client_id": body.oauth_client.client_id,
            "client_secret": secret.get_secret_value() if secret else None,
        }
    authorization = await start_oauth(
        state, target, operations=operations, return_url=return_url, oauth_client=client, settings=body.settings
    )
    return JSONResponse({"object": "authorization", **authorization.to_dict()})


async def get_connection(request: Request, connection_id: str, principal: PrincipalDep) -> JSONResponse:
    """One connection (without secrets)."""
    connection = await open_connection(request, principal, connection_id)
    return JSONResponse(connection.info.to_dict())


async def whoami(request: Request, connection_id: str, principal: PrincipalDep) -> JSONResponse:
    """Ask Kustomer who the connection's credential is (org, user, granted roles)."""
    connection = await open_connection(request, principal, connection_id)
    principal.require("whoami")
    identity = await connection.whoami()
    return JSONResponse({"object": "identity", "connectionId": connection.id, **identity.to_dict()})


async def delete_connection(request: Request, connection_id: str, principal: PrincipalDep) -> JSONResponse:
    """Delete a connection and its secrets."""
    hub = server_state(request).hub
    record = await anyio.to_thread.run_sync(lambda: hub.store.get_by_id(connection_id))
    if record is None or not principal.reaches(record.owner_id):
        raise not_found("connection")
    deleted = await hub.disconnect(record.connector_id, record.owner_id, record.label)
    if not deleted:
        raise not_found("connection")
    return JSONResponse({"object": "connection", "id": record.id, "deleted": True})


async def create_session(
    request: Request, body: SessionCreate, principal: Annotated[Principal, Depends(require_operator)]
) -> JSONResponse:
    """Mint a short-lived session token for one owner (operator only)."""
    state = server_state(request)
    config = state.config
    ttl = body.ttl_seconds if body.ttl_seconds is not None else config.session_ttl_seconds
    if ttl > config.session_max_ttl_seconds:
        raise validation_problem(
            [{"path": "body.ttlSeconds", "message": f"at most {config.session_max_ttl_seconds:g} seconds"}]
        )
    operations = body.operations
    if operations is not None:
        connector = body.connector_id or config.default_connector
        operations = check_operations(state, connector, operations, principal=principal, path="body.operations")
    token, claims = state.sessions.mint(body.owner_id.strip(), ttl=ttl, operations=operations)
    return JSONResponse({"object": "session", "token": token, **claims.to_dict()}, status_code=201)


def _callback_page(title: str, message: str, *, ok: bool, status: int) -> Response:
    css = "success" if ok else "alert"
    element = "result" if ok else "error"
    body = f'<h1>{esc(title)}</h1><div id="{element}" class="{css}" role="status">{message}</div>'
    return render_page(title, body, status=status)


async def oauth_callback(
    request: Request,
    code: Annotated[str | None, Query(max_length=4096)] = None,
    state: Annotated[str | None, Query(max_length=512)] = None,
    error: Annotated[str | None, Query(max_length=200)] = None,
    error_description: Annotated[str | None, Query(max_length=2000)] = None,
) -> Response:
    """Where Kustomer sends the user back: finishes the connection, then redirects to the ``returnUrl``."""
    server = server_state(request)
    wants_json = "application/json" in request.headers.get("accept", "") and "text/html" not in request.headers.get(
        "accept", ""
    )
    if not state:
        if wants_json:
            raise validation_problem([{"path": "query.state", "message": "required"}])
        return _callback_page("Connection failed", "The callback carries no state.", ok=False, status=400)
    outcome = await finish_oauth(server, code=code, state_value=state, error=error)
    redirect = outcome.redirect_url
    if redirect is not None:
        return RedirectResponse(redirect, status_code=303, headers={"Cache-Control": "no-store"})
    if outcome.connection is not None:
        info = outcome.connection.info
        if wants_json:
            return JSONResponse(info.to_dict())
        message = (
            f'Connected: <strong class="status-{esc(info.status)}">{esc(info.status)}</strong> '
            f"(connection <code>{esc(info.id)}</code>). You can close this window."
        )
        return _callback_page("Connected", message, ok=True, status=200)
    detail = outcome.message or "the authorization failed"
    if error_description and outcome.error == error:
        detail = f"{detail} ({error_description})"
    if wants_json:
        raise HTTPProblem(400, outcome.error or "oauth_error", detail)
    return _callback_page("Connection failed", esc(detail), ok=False, status=400)


def build_router() -> APIRouter:
    """The connection, session, operation and OAuth-callback routes."""
    router = APIRouter(tags=["connections"])
    router.add_api_route("/operations", list_operations, methods=["GET"], summary="Operations and their roles")
    router.add_api_route("/connections", list_connections, methods=["GET"], summary="List connections")
    router.add_api_route(
        "/connections", create_connection, methods=["POST"], summary="Connect with an API key, or start OAuth"
    )
    router.add_api_route("/connections/{connection_id}", get_connection, methods=["GET"], summary="Get a connection")
    router.add_api_route(
        "/connections/{connection_id}", delete_connection, methods=["DELETE"], summary="Delete a connection"
    )
    router.add_api_route(
        "/connections/{connection_id}/whoami", whoami, methods=["GET"], summary="Who the credential is"
    )
    router.add_api_route(
        "/sessions", create_session, methods=["POST"], status_code=201, summary="Mint a session token (operator)"
    )
    router.add_api_route(
        "/oauth/callback", oauth_callback, methods=["GET"], summary="OAuth redirect target", tags=["oauth"]
    )
    return router
