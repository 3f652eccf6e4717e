"""Sandbox-only admin routes under ``/sandbox`` (not Kustomer paths; never faulted or rate limited).

Open by default; when ``settings.admin_token`` is set they need ``X-Sandbox-Admin-Token: <token>``.

==========================================  ==========================================================
``GET /sandbox``                            index (JSON; HTML for browsers)
``POST /sandbox/keys``                      mint an API key ``{roles?, name?, expires_in?, region?}``
``DELETE /sandbox/keys/{id}``               revoke a key or access token
``POST /sandbox/oauth/clients``             register ``{client_id, client_secret?, redirect_uris, public?}``
``GET|PATCH /sandbox/settings``             read / change runtime settings (latency, faults, limits...)
``GET /sandbox/hooks/transactions``         inbound web hook transactions
``GET /sandbox/webhooks/deliveries``        outbound webhook delivery attempts
``GET /sandbox/webhooks/events``            outbound webhook events emitted
``GET /sandbox/requests``                   request counters and the recent request log
``POST /sandbox/reset``                     reseed ``{seed?, settings?}``; returns a new all-roles key
``GET|PUT /sandbox/app-settings``           the org's Apps Platform settings (``{key: value}``)
``GET|PUT /sandbox/apps/{app}``             an app definition
==========================================  ==========================================================
"""

from __future__ import annotations

import html
import json
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from connectors.kustomer.sandbox.auth import DEFAULT_DEMO_ROLES
from connectors.kustomer.sandbox.errors import SandboxError
from connectors.kustomer.sandbox.routes.common import get_sandbox
from connectors.kustomer.sandbox.settings import Region, SandboxSettings

__all__ = ["build_router"]


class KeyRequest(BaseModel):
    """Body of ``POST /sandbox/keys``."""

    roles: list[str] | None = None
    name: str = "sandbox key"
    expires_in: float | None = None
    region: Region | None = None


class ClientRequest(BaseModel):
    """Body of ``POST /sandbox/oauth/clients``."""

    client_id: str
    client_secret: str | None = None
    redirect_uris: list[str]
    public: bool = False


class ResetRequest(BaseModel):
    """Body of ``POST /sandbox/reset``."""

    seed: int | None = None
    settings: dict[str, Any] | None = None


def _admin(request: Request) -> None:
    token = get_sandbox(request).settings.admin_token
    if token and request.headers.get("x-sandbox-admin-token") != token:
        raise SandboxError(401, "Sandbox admin routes need X-Sandbox-Admin-Token")


async def _body(request: Request, model: type[BaseModel]) -> Any:
    raw = await request.body()
    try:
        return model.model_validate(json.loads(raw or b"{}"))
    except (json.JSONDecodeError, ValidationError) as exc:
        raise SandboxError(400, f"Invalid body: {exc}") from None


async def index(request: Request) -> Response:
    """``GET /sandbox``."""
    sb = get_sandbox(request)
    state = sb.state
    info: dict[str, Any] = {
        "name": "Kustomer sandbox (unified-connectors)",
        "baseUrl": sb.base_url,
        "region": sb.settings.region,
        "pod": sb.settings.pod,
        "org": {"id": state.org.id, "name": state.org.name},
        "counts": {name: len(coll) for name, coll in state.collections.items()},
        "docs": "/docs",
        "admin": [
            "/sandbox/keys",
            "/sandbox/oauth/clients",
            "/sandbox/settings",
            "/sandbox/hooks/transactions",
            "/sandbox/webhooks/deliveries",
            "/sandbox/webhooks/events",
            "/sandbox/requests",
            "/sandbox/reset",
            "/sandbox/app-settings",
        ],
    }
    if "text/html" in request.headers.get("accept", ""):
        rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in info["counts"].items())
        links = "".join(f'<li><a href="{p}">{p}</a></li>' for p in info["admin"])
        page = (
            "<!doctype html><html><head><meta charset='utf-8'><title>Kustomer sandbox</title></head><body>"
            f"<h1>Kustomer sandbox</h1><p>Base URL <code>{html.escape(sb.base_url)}</code>, region "
            f"{sb.settings.region} ({sb.settings.pod}), org {html.escape(state.org.name)}.</p>"
            f"<table>{rows}</table><p><a href='/docs'>API docs</a></p><ul>{links}</ul></body></html>"
        )
        return HTMLResponse(page)
    return JSONResponse(info)


async def mint_key(request: Request) -> Response:
    """``POST /sandbox/keys``."""
    sb = get_sandbox(request)
    body: KeyRequest = await _body(request, KeyRequest)
    roles = body.roles if body.roles is not None else list(DEFAULT_DEMO_ROLES)
    token = sb.mint_api_key(roles=roles, name=body.name, expires_in=body.expires_in, region=body.region)
    record = sb.token_record(token)
    return JSONResponse(
        {
            "token": token,
            "id": record.id,
            "userId": record.user_id,
            "roles": list(record.roles),
            "name": record.name,
        },
        status_code=201,
    )


async def revoke_key(request: Request) -> Response:
    """``DELETE /sandbox/keys/{id}``."""
    sb = get_sandbox(request)
    if not sb.revoke_token(request.path_params["id"]):
        raise SandboxError(404, "No such token")
    return Response(status_code=204)


async def register_client(request: Request) -> Response:
    """``POST /sandbox/oauth/clients``."""
    sb = get_sandbox(request)
    body: ClientRequest = await _body(request, ClientRequest)
    try:
        sb.register_oauth_client(body.client_id, body.client_secret, body.redirect_uris, public=body.public)
    except ValueError as exc:
        raise SandboxError(400, str(exc)) from None
    return JSONResponse({"client_id": body.client_id, "redirect_uris": body.redirect_uris}, status_code=201)


def _settings_json(settings: SandboxSettings) -> dict[str, Any]:
    return settings.model_dump(mode="json")


async def settings_get(request: Request) -> Response:
    """``GET /sandbox/settings``."""
    return JSONResponse(_settings_json(get_sandbox(request).settings))


async def settings_patch(request: Request) -> Response:
    """``PATCH /sandbox/settings``: validated; seed/size fields take effect on the next reset."""
    sb = get_sandbox(request)
    try:
        changes = json.loads(await request.body() or b"{}")
    except json.JSONDecodeError as exc:
        raise SandboxError(400, f"Invalid settings: {exc}") from None
    if not isinstance(changes, dict):
        raise SandboxError(400, "Invalid settings: expected a JSON object")
    try:
        merged = SandboxSettings.model_validate({**sb.settings.model_dump(), **changes})
    except ValidationError as exc:
        raise SandboxError(400, f"Invalid settings: {exc}") from None
    for name in changes:
        setattr(sb.settings, name, getattr(merged, name))
    return JSONResponse(_settings_json(sb.settings))


async def hook_transactions(request: Request) -> Response:
    """``GET /sandbox/hooks/transactions``."""
    return JSONResponse({"data": list(get_sandbox(request).state.hook_transactions)})


async def webhook_deliveries(request: Request) -> Response:
    """``GET /sandbox/webhooks/deliveries``."""
    state = get_sandbox(request).state
    data = [
        {
            "deliveryId": d.delivery_id,
            "eventId": d.event_id,
            "event": d.event,
            "webhookId": d.webhook_id,
            "url": d.url,
            "attempt": d.attempt,
            "at": d.at,
            "statusCode": d.status_code,
            "error": d.error,
            "duplicate": d.duplicate,
            "headers": d.headers,
            "body": d.body.decode(),
        }
        for d in state.webhook_deliveries
    ]
    return JSONResponse({"data": data})


async def webhook_events(request: Request) -> Response:
    """``GET /sandbox/webhooks/events``."""
    return JSONResponse({"data": list(get_sandbox(request).state.webhook_events)})


async def requests_log(request: Request) -> Response:
    """``GET /sandbox/requests``."""
    state = get_sandbox(request).state
    recent = [
        {
            "requestId": e.request_id,
            "method": e.method,
            "path": e.path,
            "status": e.status,
            "tokenId": e.token_id,
            "at": e.at,
            "outcome": e.outcome,
        }
        for e in list(state.request_log)[-200:]
    ]
    return JSONResponse({"counters": dict(state.counters), "recent": recent})


async def reset(request: Request) -> Response:
    """``POST /sandbox/reset``: reseed (all data, tokens and clients are replaced)."""
    sb = get_sandbox(request)
    body: ResetRequest = await _body(request, ResetRequest)
    changes = dict(body.settings or {})
    if body.seed is not None:
        changes["seed"] = body.seed
    try:
        settings = SandboxSettings.model_validate({**sb.settings.model_dump(), **changes})
    except ValidationError as exc:
        raise SandboxError(400, f"Invalid settings: {exc}") from None
    sb.reset(settings)
    token = sb.mint_api_key(roles=list(DEFAULT_DEMO_ROLES), name="sandbox demo key")
    return JSONResponse({"token": token, "org": sb.state.org.id, "seed": sb.settings.seed})


async def app_settings_get(request: Request) -> Response:
    """``GET /sandbox/app-settings``."""
    sb = get_sandbox(request)
    return JSONResponse(sb.state.app_settings.get(sb.state.org.id, {}))


async def app_settings_put(request: Request) -> Response:
    """``PUT /sandbox/app-settings``: merge ``{key: value}`` (strings)."""
    sb = get_sandbox(request)
    try:
        changes = json.loads(await request.body() or b"{}")
    except json.JSONDecodeError as exc:
        raise SandboxError(400, f"Invalid JSON: {exc}") from None
    if not isinstance(changes, dict) or not all(isinstance(v, str) for v in changes.values()):
        raise SandboxError(400, "App settings are a JSON object of strings")
    settings = sb.state.app_settings.setdefault(sb.state.org.id, {})
    settings.update(changes)
    return JSONResponse(settings)


async def app_get(request: Request) -> Response:
    """``GET /sandbox/apps/{app}``."""
    definition = get_sandbox(request).state.app_definitions.get(request.path_params["app"])
    if definition is None:
        raise SandboxError(404, "No such app")
    return JSONResponse(definition)


async def app_put(request: Request) -> Response:
    """``PUT /sandbox/apps/{app}``: store an app definition as given."""
    sb = get_sandbox(request)
    try:
        definition = json.loads(await request.body() or b"{}")
    except json.JSONDecodeError as exc:
        raise SandboxError(400, f"Invalid JSON: {exc}") from None
    if not isinstance(definition, dict):
        raise SandboxError(400, "An app definition is a JSON object")
    from connectors.errors import CommandDefinitionError
    from connectors.kustomer.commands import parse_app_definition

    try:
        app = parse_app_definition(definition)
    except CommandDefinitionError as exc:
        raise SandboxError(400, f"Invalid app definition: {exc}") from None
    if app.app != request.path_params["app"]:
        raise SandboxError(400, f"The definition is for app {app.app!r}, not {request.path_params['app']!r}")
    sb.state.app_definitions[app.app] = definition
    return JSONResponse(definition)


def build_router() -> APIRouter:
    """The ``/sandbox`` admin routes."""
    router = APIRouter(tags=["sandbox admin"], dependencies=[Depends(_admin)])
    router.add_api_route("/sandbox", index, methods=["GET"])
    router.add_api_route("/sandbox/keys", mint_key, methods=["POST"])
    router.add_api_route("/sandbox/keys/{id}", revoke_key, methods=["DELETE"])
    router.add_api_route("/sandbox/oauth/clients", register_client, methods=["POST"])
    router.add_api_route("/sandbox/settings", settings_get, methods=["GET"])
    router.add_api_route("/sandbox/settings", settings_patch, methods=["PATCH"])
    router.add_api_route("/sandbox/hooks/transactions", hook_transactions, methods=["GET"])
    router.add_api_route("/sandbox/webhooks/deliveries", webhook_deliveries, methods=["GET"])
    router.add_api_route("/sandbox/webhooks/events", webhook_events, methods=["GET"])
    router.add_api_route("/sandbox/requests", requests_log, methods=["GET"])
    router.add_api_route("/sandbox/reset", reset, methods=["POST"])
    router.add_api_route("/sandbox/app-settings", app_settings_get, methods=["GET"])
    router.add_api_route("/sandbox/app-settings", app_settings_put, methods=["PUT"])
    router.add_api_route("/sandbox/apps/{app}", app_get, methods=["GET"])
    router.add_api_route("/sandbox/apps/{app}", app_put, methods=["PUT"])
    return router
