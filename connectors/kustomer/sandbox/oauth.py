"""OAuth 2.0 authorization-code flow with PKCE and rotating refresh tokens (kustomer-api.md §1.5).

* ``GET /oauth/authorize?client_id&redirect_uri&response_type=code&scope&state&code_challenge
  &code_challenge_method=S256`` serves an HTML consent page listing the requested roles, with Approve and
  Deny buttons that POST back (with a one-time CSRF token). Scopes are role strings plus optional
  ``offline_access`` (needed for a refresh token). An unknown ``client_id`` or a ``redirect_uri`` that is not
  exactly registered gets an error page and no redirect; other errors redirect with ``error=...``. Public
  clients must use PKCE (S256 only). The authorising user is the org owner, or ``user_id=<id>`` (a sandbox
  extension). Approve -> ``302 redirect_uri?code&state``; Deny -> ``error=access_denied``.
* ``POST /oauth/token`` (form-encoded; client auth by HTTP Basic or ``client_secret_post``; public
  clients send only ``client_id``): ``grant_type=authorization_code`` (single-use codes living
  ``oauth_code_ttl_seconds``; PKCE verified; presenting a used code revokes every token issued from it) and
  ``grant_type=refresh_token`` (each refresh returns a NEW refresh token; presenting an already-rotated one
  is ``invalid_grant`` AND revokes the whole family: all access and refresh tokens of that grant). Refresh
  tokens expire after ``oauth_refresh_idle_seconds`` unused. Errors follow RFC 6749 (``invalid_request``,
  ``invalid_client`` (401), ``invalid_grant``, ``unsupported_grant_type``, ``invalid_scope``).

Access tokens are signed like API keys and carry exactly the granted roles; ``GET /v1/users/current`` returns
the authorising user. Counters in ``sb.state.counters``: ``oauth.authorization_code``, ``oauth.refresh``,
``oauth.code_reuse``, ``oauth.refresh_reuse``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import secrets
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from connectors.kustomer.sandbox.auth import is_known_role
from connectors.kustomer.sandbox.store import AuthCode, Grant, OAuthClient, PendingAuthorization, RefreshToken

if TYPE_CHECKING:
    from connectors.kustomer.sandbox.app import Sandbox

__all__ = ["OFFLINE_ACCESS", "OAuthServer", "build_router", "pkce_challenge"]

OFFLINE_ACCESS: Final = "offline_access"
_NO_STORE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def pkce_challenge(verifier: str) -> str:
    """The S256 ``code_challenge`` of a ``code_verifier``."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class OAuthError(Exception):
    """An RFC 6749 error answered as JSON by the token endpoint."""

    def __init__(self, error: str, description: str, *, status: int = 400, basic: bool = False) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status
        self.basic = basic

    def response(self) -> JSONResponse:
        """The error response."""
        headers = dict(_NO_STORE)
        if self.status == 401 and self.basic:
            headers["WWW-Authenticate"] = 'Basic realm="kustomer"'
        return JSONResponse(
            {"error": self.error, "error_description": self.description},
            status_code=self.status,
            headers=headers,
        )


class _PageError(Exception):
    """An authorization error that must not redirect (bad client or redirect URI)."""


def _with_query(url: str, params: Mapping[str, str | None]) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [(k, v) for k, v in params.items() if v is not None]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


class OAuthServer:
    """OAuth clients, grants and tokens of one sandbox.

    Args:
        sandbox: the owning sandbox.
    """

    def __init__(self, sandbox: Sandbox) -> None:
        self._sb = sandbox

    def register_client(
        self, client_id: str, client_secret: str | None, redirect_uris: Sequence[str], *, public: bool = False
    ) -> OAuthClient:
        """Register (or replace) a client.

        Raises:
            ValueError: a confidential client without a secret, or no redirect URI.
        """
        if not public and not client_secret:
            raise ValueError("a confidential OAuth client needs a client_secret")
        if not redirect_uris:
            raise ValueError("an OAuth client needs at least one redirect URI")
        client = OAuthClient(client_id, client_secret, tuple(redirect_uris), public, client_id)
        self._sb.state.oauth_clients[client_id] = client
        return client

    # -- authorize -------------------------------------------------------------------------------------------
    def begin(self, params: Mapping[str, str]) -> PendingAuthorization | str:
        """Validate an authorization request.

        Returns:
            The pending authorization to show a consent page for, or a redirect URL carrying an error.

        Raises:
            _PageError: unknown client or unregistered redirect URI (shown as an error page).
        """
        state = self._sb.state
        client = state.oauth_clients.get(params.get("client_id", ""))
        if client is None:
            raise _PageError("Unknown client_id.")
        redirect_uri = params.get("redirect_uri") or (client.redirect_uris[0] if len(client.redirect_uris) == 1 else "")
        if redirect_uri not in client.redirect_uris:
            raise _PageError("The redirect_uri is not registered for this client (exact match required).")
        state_param = params.get("state")

        def fail(error: str, description: str) -> str:
            return _with_query(redirect_uri, {"error": error, "error_description": description, "state": state_param})

        if params.get("response_type") != "code":
            return fail("unsupported_response_type", "Only response_type=code is supported.")
        scopes = tuple(dict.fromkeys(params.get("scope", "").split()))
        if not scopes or set(scopes) == {OFFLINE_ACCESS}:
            return fail("invalid_scope", "Request at least one Kustomer role as scope.")
        unknown = [s for s in scopes if s != OFFLINE_ACCESS and not is_known_role(s)]
        if unknown:
            return fail("invalid_scope", f"Unknown role(s): {' '.join(unknown)}")
        challenge = params.get("code_challenge")
        method = params.get("code_challenge_method")
        if challenge and method != "S256":
            return fail("invalid_request", "code_challenge_method must be S256.")
        if method and not challenge:
            return fail("invalid_request", "code_challenge_method without code_challenge.")
        if client.public and not challenge:
            return fail("invalid_request", "Public clients must use PKCE (code_challenge, S256).")
        user_id = params.get("user_id") or self._sb.owner_id
        if state.users.get(user_id) is None:
            return fail("invalid_request", "Unknown user_id.")
        pending = PendingAuthorization(
            id=secrets.token_urlsafe(16),
            csrf=secrets.token_urlsafe(24),
            client_id=client.client_id,
            redirect_uri=redirect_uri,
            scopes=scopes,
            state=state_param,
            code_challenge=challenge,
            user_id=user_id,
            created_ms=self._sb.now_ms(),
        )
        state.oauth_pending[pending.id] = pending
        return pending

    def decide(self, request_id: str, csrf: str, *, approve: bool) -> str:
        """Apply the consent decision; return the redirect URL.

        Raises:
            _PageError: unknown or expired request, or a CSRF token mismatch.
        """
        state = self._sb.state
        pending = state.oauth_pending.get(request_id)
        if pending is None:
            raise _PageError("This authorization request is unknown or was already answered.")
        if not hmac.compare_digest(pending.csrf, csrf):
            raise _PageError("Invalid CSRF token.")
        del state.oauth_pending[request_id]
        if not approve:
            return _with_query(
                pending.redirect_uri,
                {
                    "error": "access_denied",
                    "error_description": "The user denied access.",
                    "state": pending.state,
                },
            )
        now = self._sb.now_ms()
        grant = Grant(self._sb.ids.new(), pending.client_id, pending.user_id, pending.scopes, now)
        state.oauth_grants[grant.id] = grant
        code = AuthCode(
            code=secrets.token_urlsafe(32),
            client_id=pending.client_id,
            redirect_uri=pending.redirect_uri,
            grant_id=grant.id,
            code_challenge=pending.code_challenge,
            expires_ms=now + self._sb.settings.oauth_code_ttl_seconds * 1000,
        )
        state.oauth_codes[code.code] = code
        return _with_query(pending.redirect_uri, {"code": code.code, "state": pending.state})

    # -- token -----------------------------------------------------------------------------------------------
    def _client(self, form: Mapping[str, str], authorization: str | None) -> OAuthClient:
        basic: tuple[str, str] | None = None
        if authorization and authorization.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
                user, _, password = decoded.partition(":")
                basic = (unquote(user), unquote(password))
            except (ValueError, UnicodeDecodeError):
                raise OAuthError("invalid_client", "Malformed Basic credentials.", status=401, basic=True) from None
        if basic and form.get("client_secret"):
            raise OAuthError("invalid_request", "Use one client authentication method, not two.")
        client_id = basic[0] if basic else form.get("client_id", "")
        secret = basic[1] if basic else form.get("client_secret")
        if basic and form.get("client_id") and form["client_id"] != client_id:
            raise OAuthError("invalid_request", "client_id does not match the Basic credentials.")
        client = self._sb.state.oauth_clients.get(client_id)
        if client is None:
            raise OAuthError("invalid_client", "Unknown client.", status=401, basic=basic is not None)
        if client.public:
            if secret:
                raise OAuthError("invalid_client", "Public clients have no secret.", status=401)
            return client
        if not secret or not hmac.compare_digest(secret, client.client_secret or ""):
            raise OAuthError("invalid_client", "Client authentication failed.", status=401, basic=basic is not None)
        return client

    def token(self, form: Mapping[str, str], authorization: str | None) -> dict[str, Any]:
        """Run the token endpoint.

        Raises:
            OAuthError: any RFC 6749 error.
        """
        client = self._client(form, authorization)
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            return self._exchange_code(client, form)
        if grant_type == "refresh_token":
            return self._refresh(client, form)
        if not grant_type:
            raise OAuthError("invalid_request", "grant_type is required.")
        raise OAuthError("unsupported_grant_type", f"Unsupported grant_type {grant_type!r}.")

    def _exchange_code(self, client: OAuthClient, form: Mapping[str, str]) -> dict[str, Any]:
        state = self._sb.state
        raw = form.get("code")
        if not raw:
            raise OAuthError("invalid_request", "code is required.")
        code = state.oauth_codes.get(raw)
        if code is None or code.client_id != client.client_id:
            raise OAuthError("invalid_grant", "Unknown authorization code.")
        grant = state.oauth_grants[code.grant_id]
        if code.used:
            state.counters["oauth.code_reuse"] += 1
            self.revoke_grant(grant, "authorization code reused")
            raise OAuthError("invalid_grant", "Authorization code already used; its tokens were revoked.")
        if self._sb.now_ms() >= code.expires_ms:
            raise OAuthError("invalid_grant", "Authorization code expired.")
        if form.get("redirect_uri", code.redirect_uri) != code.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri does not match the authorization request.")
        if code.code_challenge is not None:
            verifier = form.get("code_verifier", "")
            if not (43 <= len(verifier) <= 128) or not hmac.compare_digest(
                pkce_challenge(verifier), code.code_challenge
            ):
                raise OAuthError("invalid_grant", "PKCE verification failed (code_verifier).")
        elif form.get("code_verifier"):
            raise OAuthError("invalid_grant", "code_verifier given but no code_challenge was sent.")
        code.used = True
        state.counters["oauth.authorization_code"] += 1
        return self._issue(grant, grant.scopes)

    def _refresh(self, client: OAuthClient, form: Mapping[str, str]) -> dict[str, Any]:
        state = self._sb.state
        raw = form.get("refresh_token")
        if not raw:
            raise OAuthError("invalid_request", "refresh_token is required.")
        token = state.oauth_refresh_tokens.get(raw)
        if token is None or token.client_id != client.client_id:
            raise OAuthError("invalid_grant", "Unknown refresh token.")
        grant = state.oauth_grants[token.grant_id]
        if token.status == "rotated":
            state.counters["oauth.refresh_reuse"] += 1
            self.revoke_grant(grant, "rotated refresh token reused")
            raise OAuthError("invalid_grant", "Refresh token already used; the whole token family was revoked.")
        if token.status == "revoked" or grant.revoked:
            raise OAuthError("invalid_grant", "Refresh token revoked.")
        now = self._sb.now_ms()
        if now - token.issued_ms >= self._sb.settings.oauth_refresh_idle_seconds * 1000:
            token.status = "revoked"
            raise OAuthError("invalid_grant", "Refresh token expired (unused for too long).")
        scopes = token.scopes
        if form.get("scope"):
            asked = tuple(dict.fromkeys(form["scope"].split()))
            if not set(asked) <= set(scopes):
                raise OAuthError("invalid_scope", "A refresh cannot widen the granted scope.")
            scopes = asked
        token.status = "rotated"
        state.counters["oauth.refresh"] += 1
        return self._issue(grant, scopes, keep_offline=True)

    def _issue(self, grant: Grant, scopes: tuple[str, ...], *, keep_offline: bool = False) -> dict[str, Any]:
        sb = self._sb
        ttl = sb.settings.oauth_access_token_ttl_seconds
        record, access = sb.auth.mint(
            kind="oauth",
            name=f"oauth:{grant.client_id}",
            user_id=grant.user_id,
            user_type="user",
            roles=[s for s in scopes if s != OFFLINE_ACCESS],
            expires_in=ttl,
            grant_id=grant.id,
        )
        grant.access_token_ids.append(record.id)
        body: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": ttl,
            "scope": " ".join(scopes),
        }
        if OFFLINE_ACCESS in grant.scopes and (OFFLINE_ACCESS in scopes or keep_offline):
            refresh = RefreshToken(
                token=secrets.token_urlsafe(40),
                grant_id=grant.id,
                client_id=grant.client_id,
                scopes=grant.scopes,
                issued_ms=sb.now_ms(),
            )
            sb.state.oauth_refresh_tokens[refresh.token] = refresh
            grant.refresh_tokens.append(refresh.token)
            body["refresh_token"] = refresh.token
        return body

    def revoke_grant(self, grant: Grant, reason: str) -> None:
        """Revoke a token family: every access and refresh token issued under the grant."""
        state = self._sb.state
        grant.revoked = True
        grant.revoked_reason = reason
        for token_id in grant.access_token_ids:
            record = state.tokens.get(token_id)
            if record is not None:
                record.revoked = True
        for raw in grant.refresh_tokens:
            refresh = state.oauth_refresh_tokens.get(raw)
            if refresh is not None and refresh.status == "active":
                refresh.status = "revoked"


# -- HTML ----------------------------------------------------------------------------------------------------
_STYLE: Final = (
    "body{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;color:#1f2933}"
    "h1{font-size:1.4rem}ul{background:#f5f7fa;border-radius:8px;padding:1rem 1rem 1rem 2rem}"
    "code{font-size:.9rem}button{font-size:1rem;padding:.5rem 1.2rem;margin-right:.5rem;border-radius:6px;"
    "border:1px solid #9aa5b1;cursor:pointer}"
    "button.approve{background:#2f80ed;color:#fff;border-color:#2f80ed}"
    ".muted{color:#616e7c;font-size:.85rem}"
)


def _page(title: str, body: str, *, status: int = 200) -> HTMLResponse:
    document = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    )
    return HTMLResponse(document, status_code=status, headers={"Cache-Control": "no-store"})


def consent_page(sb: Sandbox, pending: PendingAuthorization) -> HTMLResponse:
    """The consent page of a pending authorization."""
    user = sb.state.users.get(pending.user_id)
    user_name = str(user.attrs.get("name")) if user else pending.user_id
    items = "".join(
        "<li>Stay connected: <code>offline_access</code> (a refresh token)</li>"
        if scope == OFFLINE_ACCESS
        else f"<li><code>{html.escape(scope)}</code></li>"
        for scope in pending.scopes
    )
    body = (
        f"<h1>Authorize <strong>{html.escape(pending.client_id)}</strong></h1>"
        f"<p>{html.escape(pending.client_id)} wants to access the Kustomer org "
        f"<strong>{html.escape(sb.state.org.name)}</strong> as <strong>{html.escape(user_name)}</strong> "
        f'with these roles:</p><ul id="scopes">{items}</ul>'
        '<form method="post" action="authorize">'
        f'<input type="hidden" name="request_id" value="{html.escape(pending.id)}">'
        f'<input type="hidden" name="csrf_token" value="{html.escape(pending.csrf)}">'
        '<button class="approve" type="submit" name="decision" value="approve">Approve</button>'
        '<button type="submit" name="decision" value="deny">Deny</button></form>'
        f'<p class="muted">You will be redirected to {html.escape(pending.redirect_uri)}. '
        "Kustomer sandbox (unified-connectors).</p>"
    )
    return _page("Authorize application - Kustomer", body)


def _error_page(message: str) -> HTMLResponse:
    body = f'<h1>Authorization error</h1><p id="error">{html.escape(message)}</p>'
    return _page("Authorization error - Kustomer", body, status=400)


# -- routes --------------------------------------------------------------------------------------------------
def _sandbox(request: Request) -> Sandbox:
    sandbox: Sandbox = request.app.state.sandbox
    return sandbox


async def authorize_get(request: Request) -> Response:
    """``GET /oauth/authorize``: consent page (or an error page / error redirect)."""
    sb = _sandbox(request)
    try:
        outcome = sb.oauth.begin(dict(request.query_params))
    except _PageError as exc:
        return _error_page(str(exc))
    if isinstance(outcome, str):
        return RedirectResponse(outcome, status_code=302)
    return consent_page(sb, outcome)


async def authorize_post(request: Request) -> Response:
    """``POST /oauth/authorize``: the consent decision; 302 to the client."""
    sb = _sandbox(request)
    async with request.form() as form:
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
    decision = fields.get("decision")
    if decision not in ("approve", "deny"):
        return _error_page("Missing decision.")
    try:
        url = sb.oauth.decide(fields.get("request_id", ""), fields.get("csrf_token", ""), approve=decision == "approve")
    except _PageError as exc:
        return _error_page(str(exc))
    return RedirectResponse(url, status_code=302)


async def token_post(request: Request) -> Response:
    """``POST /oauth/token``."""
    sb = _sandbox(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return OAuthError("invalid_request", "Send the token request form-encoded.").response()
    async with request.form() as form:
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
    try:
        body = sb.oauth.token(fields, request.headers.get("authorization"))
    except OAuthError as exc:
        return exc.response()
    return JSONResponse(body, headers=_NO_STORE)


def build_router() -> APIRouter:
    """OAuth routes."""
    router = APIRouter(tags=["oauth"])
    router.add_api_route("/oauth/authorize", authorize_get, methods=["GET"], summary="Authorize (consent page)")
    router.add_api_route("/oauth/authorize", authorize_post, methods=["POST"], summary="Consent decision")
    router.add_api_route("/oauth/token", token_post, methods=["POST"], summary="Token endpoint")
    return router
