"""The Connect page (``/connect``): pick operations, see the Kustomer roles they need, connect, see the status.

Who the page acts for:

* ``/connect?session=<token>`` (a session token from ``POST /sessions``): the token is moved into an
  ``HttpOnly`` ``SameSite=Lax`` cookie and the browser is redirected to ``/connect`` (so the token leaves the
  address bar and the history); operator keys are never accepted here;
* the embedded demo without an operator key: loopback browsers act as the demo owner.

Flow: tick operations (the roles they need update live, and are listed again on the next step) ->
*Continue* -> connect with OAuth (redirect to Kustomer's consent page, back through ``/oauth/callback`` to
``/connect?connectionId=...``) or with an API key (checked against the roles right away). Every form carries
a CSRF token bound to the session.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import anyio.to_thread
from fastapi import APIRouter
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from connectors.errors import ConnectorError
from connectors.runtime.connector import CRUD_ACTIONS, Operation
from connectors.server.config import origin_of
from connectors.server.errors import HTTPProblem, status_for
from connectors.server.flows import (
    check_operations,
    connect_with_api_key,
    resolve_target,
    start_oauth,
    with_query,
)
from connectors.server.pages import esc, render_page
from connectors.server.security import Principal, principal_from_request
from connectors.server.sessions import TOKEN_PREFIX, SessionTokenError
from connectors.server.state import ServerState, server_state

__all__ = ["COOKIE_NAME", "build_router"]

COOKIE_NAME: Final = "connectors_session"
_ACTIONS: Final = (*CRUD_ACTIONS, "fieldRead", "fieldWrite")
_REGIONS: Final = ("us", "eu", "in")


# -- who ------------------------------------------------------------------------------------------------------
def _principal(request: Request) -> Principal | None:
    cookie = request.cookies.get(COOKIE_NAME)
    token = cookie if cookie and cookie.startswith(TOKEN_PREFIX) else None
    try:
        return principal_from_request(request, cookie_token=token)
    except HTTPProblem:
        return None


def _signed_out(state: ServerState, reason: str) -> Response:
    body = (
        "<h1>Connect Kustomer</h1>"
        f'<div id="error" class="alert" role="alert">{esc(reason)}</div>'
        "<p>Open this page with a session token from your application: "
        "<code>/connect?session=&lt;token&gt;</code> (your backend mints it with <code>POST /sessions</code>).</p>"
    )
    return render_page("Connect Kustomer", body, status=401)


# -- rendering ------------------------------------------------------------------------------------------------
def _operations(state: ServerState) -> Mapping[str, Operation]:
    return state.hub.connector_class(state.config.default_connector).operations()


def _group(table: Mapping[str, Operation]) -> tuple[dict[str, dict[str, Operation]], list[Operation]]:
    models: dict[str, dict[str, Operation]] = {}
    other: list[Operation] = []
    for name, op in table.items():
        model, sep, action = name.partition("::")
        if sep and action in _ACTIONS:
            models.setdefault(model, {})[action] = op
        else:
            other.append(op)
    return models, other


def _checkbox(op: Operation, checked: bool) -> str:
    roles = " ".join(op.preferred_roles)
    title = f"{op.description} — roles: {roles or 'none'}"
    return (
        f'<input type="checkbox" name="operations" value="{esc(op.name)}" data-roles="{esc(roles)}" '
        f'title="{esc(title)}" aria-label="{esc(op.name)}"{" checked" if checked else ""}>'
    )


def _picker(state: ServerState, selected: Sequence[str]) -> str:
    models, other = _group(_operations(state))
    chosen = set(selected)
    head = "".join(f"<th>{esc(a)}</th>" for a in _ACTIONS)
    rows = []
    for model, ops in models.items():
        cells = "".join(
            f'<td class="op">{_checkbox(ops[a], ops[a].name in chosen)}</td>' if a in ops else "<td></td>"
            for a in _ACTIONS
        )
        rows.append(f"<tr><th><code>{esc(model)}</code></th>{cells}</tr>")
    extra = "".join(
        f"<li><label>{_checkbox(op, op.name in chosen)} <code>{esc(op.name)}</code> "
        f'<span class="muted">{esc(op.description)}</span></label></li>'
        for op in other
    )
    return (
        '<form id="pick" method="get" action="/connect" class="card">'
        "<h2>1. Choose what the connection may do</h2>"
        f'<table id="operations"><thead><tr><th>model</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
        f'<h3>Other operations</h3><ul class="plain">{extra}</ul>'
        '<p>Kustomer roles needed (<span id="roles-live-count">0</span>):</p><ul id="roles-live" class="roles"></ul>'
        '<button type="submit" id="continue" class="primary">Continue</button></form>'
    )


def _connections_table(state: ServerState, infos: Sequence[Any], csrf: str) -> str:
    if not infos:
        return '<section id="connections" class="card"><h2>Connections</h2><p class="muted">None yet.</p></section>'
    rows = []
    for info in infos:
        rows.append(
            f'<tr data-connection-id="{esc(info.id)}"><td><code>{esc(info.id)}</code></td>'
            f"<td>{esc(info.label or '(default)')}</td><td>{esc(info.auth_type)}</td>"
            f'<td class="status status-{esc(info.status)}">{esc(info.status)}</td>'
            f"<td>{len(info.operations)}</td>"
            '<td><form method="post" action="/connect/disconnect">'
            f'<input type="hidden" name="csrf" value="{esc(csrf)}">'
            f'<input type="hidden" name="connection_id" value="{esc(info.id)}">'
            '<button type="submit" class="danger">Disconnect</button></form></td></tr>'
        )
    return (
        '<section id="connections" class="card"><h2>Connections</h2><table><thead><tr><th>id</th><th>label</th>'
        "<th>auth</th><th>status</th><th>operations</th><th></th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def _hidden_operations(operations: Sequence[str]) -> str:
    return "".join(f'<input type="hidden" name="operations" value="{esc(op)}">' for op in operations)


def _connect_forms(state: ServerState, operations: Sequence[str], csrf: str, values: Mapping[str, str]) -> str:
    cls = state.hub.connector_class(state.config.default_connector)
    roles = cls.roles_for(operations)
    ks = state.hub.settings.kustomer
    fixed = ks.base_url
    role_items = "".join(f"<li><code>{esc(r)}</code></li>" for r in roles) or "<li>none</li>"
    op_items = "".join(f"<li><code>{esc(o)}</code></li>" for o in operations)
    where = (
        f'<p class="muted">Kustomer at <code>{esc(fixed)}</code></p>'
        if fixed
        else '<label class="field">Region <select name="region">'
        + "".join(
            f'<option value="{r}"{" selected" if values.get("region", ks.region or "us") == r else ""}>{r}</option>'
            for r in _REGIONS
        )
        + "</select></label>"
    )
    label = (
        '<label class="field">Label (optional) '
        f'<input type="text" name="label" maxlength="200" value="{esc(values.get("label", ""))}"></label>'
    )
    common = f'<input type="hidden" name="csrf" value="{esc(csrf)}">{_hidden_operations(operations)}'
    if ks.client_id:
        org = (
            ""
            if fixed
            else '<label class="field">Kustomer org (subdomain) '
            f'<input type="text" name="org" maxlength="100" value="{esc(values.get("org", ks.org or ""))}"></label>'
        )
        oauth = (
            '<form id="oauth-form" method="post" action="/connect/oauth" class="card"><h3>Sign in with Kustomer</h3>'
            "<p>You approve these roles on Kustomer's consent page "
            "(plus <code>offline_access</code>, so the connection stays signed in).</p>"
            f"{common}{where}{org}{label}"
            '<button type="submit" id="connect-oauth" class="primary">Connect with Kustomer (OAuth)</button></form>'
        )
    else:
        oauth = (
            '<div class="card muted" id="oauth-unavailable">OAuth is not configured on this server '
            "(set KUSTOMER_CLIENT_ID and KUSTOMER_CLIENT_SECRET).</div>"
        )
    api_key = (
        '<form id="apikey-form" method="post" action="/connect/api-key" class="card"><h3>Use an API key</h3>'
        "<p>In Kustomer: Settings &gt; Security &gt; API Keys &gt; Add API Key, with the roles listed here.</p>"
        f'{common}{where}<label class="field">API key <input type="password" name="api_key" id="api-key" '
        'autocomplete="off" required></label>'
        f'{label}<button type="submit" id="connect-apikey" class="primary">Connect with an API key</button></form>'
    )
    return (
        '<section id="review" class="card"><h2>2. Connect</h2>'
        f'<p>Operations:</p><ul id="selected-operations">{op_items}</ul>'
        f'<p>Kustomer roles needed ({len(roles)}):</p><ul id="roles-needed" class="roles">{role_items}</ul>'
        '<p><a href="/connect" id="change">Change operations</a></p></section>'
        f'<div class="grid">{oauth}{api_key}</div>'
    )


async def _render(
    request: Request,
    state: ServerState,
    principal: Principal,
    *,
    operations: Sequence[str] = (),
    error: str | None = None,
    status: int = 200,
    values: Mapping[str, str] | None = None,
) -> Response:
    owner = principal.owner_id or ""
    csrf = state.sessions.csrf_token(principal.subject)
    infos = await state.hub.list(owner_id=owner)
    parts = [f'<h1>Connect Kustomer</h1><p>Owner: <strong id="owner">{esc(owner)}</strong></p>']
    if error:
        parts.append(f'<div id="error" class="alert" role="alert">{esc(error)}</div>')
    connection_id = request.query_params.get("connectionId")
    if connection_id:
        info = next((i for i in infos if i.id == connection_id), None)
        if info is not None:
            parts.append(
                f'<div id="status" class="success" data-status="{esc(info.status)}" role="status">'
                f'Connection <code>{esc(info.id)}</code> is <strong class="status-{esc(info.status)}">'
                f"{esc(info.status)}</strong> with {len(info.operations)} operation(s).</div>"
            )
    parts.append(_connections_table(state, infos, csrf))
    if operations:
        parts.append(_connect_forms(state, operations, csrf, values or {}))
    else:
        parts.append(_picker(state, ()))
    footer = 'unified-connectors host app &middot; <a href="/docs">API docs</a>'
    return render_page("Connect Kustomer", "".join(parts), status=status, footer=footer)


# -- routes ---------------------------------------------------------------------------------------------------
async def connect_page(request: Request) -> Response:
    """The Connect page (step 1, or step 2 with ``?operations=...``, or a status/error after a flow)."""
    state = server_state(request)
    session = request.query_params.get("session")
    if session is not None:
        return _adopt_session(request, state, session)
    principal = _principal(request)
    if principal is None:
        return _signed_out(state, "Not signed in, or the session expired.")
    error = request.query_params.get("error")
    if error:
        described = request.query_params.get("errorDescription")
        error = f"{error}: {described}" if described else error
    selected = [v for v in request.query_params.getlist("operations") if v]
    if selected:
        try:
            selected = check_operations(
                state, state.config.default_connector, selected, principal=principal, path="query.operations"
            )
        except HTTPProblem as problem:
            return await _render(request, state, principal, error=problem.message, status=problem.status)
    return await _render(request, state, principal, operations=selected, error=error)


def _adopt_session(request: Request, state: ServerState, token: str) -> Response:
    if not token.startswith(TOKEN_PREFIX):
        return _signed_out(state, "That is not a session token.")
    try:
        claims = state.sessions.verify(token)
    except SessionTokenError as exc:
        return _signed_out(state, str(exc))
    kept = [(k, v) for k, v in request.query_params.multi_items() if k != "session"]
    target = with_query("/connect", dict(kept))
    response = RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})
    max_age = max(1, int(claims.expires_at - state.hub.clock()))
    response.set_cookie(
        COOKIE_NAME,
        token,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="lax",
        secure=state.public_url.startswith("https://"),
    )
    return response


async def _form(request: Request) -> tuple[Principal, FormData] | Response:
    state = server_state(request)
    principal = _principal(request)
    if principal is None:
        return _signed_out(state, "Not signed in, or the session expired.")
    form = await request.form()
    csrf = form.get("csrf")
    if not isinstance(csrf, str) or not state.sessions.check_csrf(principal.subject, csrf):
        return render_page(
            "Connect Kustomer",
            '<h1>Connect Kustomer</h1><div id="error" class="alert">The form expired; reload the page.</div>',
            status=403,
        )
    return principal, form


def _text(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return value.strip() if isinstance(value, str) and value.strip() else None


async def connect_api_key(request: Request) -> Response:
    """Connect with an API key (verified with Kustomer, roles checked), then show the status."""
    state = server_state(request)
    checked = await _form(request)
    if isinstance(checked, Response):
        return checked
    principal, form = checked
    operations = [v for v in form.getlist("operations") if isinstance(v, str) and v]
    values = {k: v for k in ("region", "label") if (v := _text(form, k)) is not None}
    try:
        operations = check_operations(
            state, state.config.default_connector, operations, principal=principal, path="form.operations"
        )
        target = resolve_target(
            state,
            principal,
            connector_id=None,
            owner_id=None,
            label=values.get("label", ""),
            region=values.get("region"),
            org=None,
            base_url=None,
        )
        connection = await connect_with_api_key(
            state, target, api_key=_text(form, "api_key") or "", operations=operations or None
        )
    except (HTTPProblem, ConnectorError) as exc:
        status = exc.status if isinstance(exc, HTTPProblem) else status_for(exc)
        return await _render(
            request, state, principal, operations=operations, error=exc.message, status=status, values=values
        )
    info = connection.info
    return RedirectResponse(with_query("/connect", {"connectionId": info.id, "status": info.status}), status_code=303)


async def connect_oauth(request: Request) -> Response:
    """Start OAuth: redirect to Kustomer's consent page (it comes back through ``/oauth/callback``)."""
    state = server_state(request)
    checked = await _form(request)
    if isinstance(checked, Response):
        return checked
    principal, form = checked
    operations = [v for v in form.getlist("operations") if isinstance(v, str) and v]
    values = {k: v for k in ("region", "org", "label") if (v := _text(form, k)) is not None}
    here = origin_of(str(request.base_url))
    allowed = {origin_of(state.public_url), *state.config.callback_origins}
    redirect_uri = f"{here}/oauth/callback" if here in allowed else state.callback_url
    if not operations:
        return await _render(request, state, principal, error="choose at least one operation", status=422)
    try:
        operations = check_operations(
            state, state.config.default_connector, operations, principal=principal, path="form.operations"
        )
        target = resolve_target(
            state,
            principal,
            connector_id=None,
            owner_id=None,
            label=values.get("label", ""),
            region=values.get("region"),
            org=values.get("org"),
            base_url=None,
        )
        authorization = await start_oauth(
            state, target, operations=operations, return_url="/connect", redirect_uri=redirect_uri
        )
    except (HTTPProblem, ConnectorError) as exc:
        status = exc.status if isinstance(exc, HTTPProblem) else status_for(exc)
        return await _render(
            request, state, principal, operations=operations, error=exc.message, status=status, values=values
        )
    if authorization.url is None:
        return RedirectResponse(
            with_query("/connect", {"connectionId": authorization.connection_id, "status": "active"}), status_code=303
        )
    return RedirectResponse(authorization.url, status_code=303, headers={"Cache-Control": "no-store"})


async def disconnect(request: Request) -> Response:
    """Delete one of the owner's connections from the page."""
    state = server_state(request)
    checked = await _form(request)
    if isinstance(checked, Response):
        return checked
    principal, form = checked
    connection_id = _text(form, "connection_id") or ""
    hub = state.hub
    record = await anyio.to_thread.run_sync(lambda: hub.store.get_by_id(connection_id))
    if record is not None and principal.reaches(record.owner_id):
        await hub.disconnect(record.connector_id, record.owner_id, record.label)
    return RedirectResponse("/connect", status_code=303)


def build_router() -> APIRouter:
    """The Connect page routes (HTML; not part of the JSON API's OpenAPI schema)."""
    router = APIRouter(include_in_schema=False)
    router.add_api_route("/connect", connect_page, methods=["GET"])
    router.add_api_route("/connect/api-key", connect_api_key, methods=["POST"])
    router.add_api_route("/connect/oauth", connect_oauth, methods=["POST"])
    router.add_api_route("/connect/disconnect", disconnect, methods=["POST"])
    return router
