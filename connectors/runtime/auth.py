"""Credentials: API keys, OAuth 2.0 (authorization code + PKCE S256), and safe token refresh.

* :class:`ApiKeyAuth` sets ``Authorization: Bearer <key>``; its repr never shows the key.
* :func:`authorization_url`, :func:`exchange_code` and :func:`refresh_grant` speak OAuth 2.0 through
  authlib's protocol helpers (RFC 6749 request encoding, RFC 7636 PKCE) over our own httpx client, so token
  requests get the same transport (sandbox, retries) as everything else.
* :class:`TokenManager` keeps one connection's access token fresh: proactive refresh ``margin`` seconds
  before expiry (at most half the token's lifetime), one reactive refresh after a 401, and at most one refresh
  per connection at a time across tasks (single-flight lock), threads and processes (a row lock in the store,
  re-read after taking it, and compare-and-swap on the token version). A refresh runs as its own task, so a
  cancelled caller never leaves a rotated refresh token unsaved or the store lock held. A refresh response
  without a refresh token keeps the old one. ``invalid_grant`` after a concurrent rotation is recovered by
  re-reading; a refresh that fails for good marks the connection ``needs_reauth`` (committed before anything
  is raised) and emits an auth event; a passing failure (token endpoint down, store busy) while the current
  token is still valid is logged and the current token used.
* :class:`OAuthTokenAuth` is the ``httpx.Auth`` that uses a :class:`TokenManager`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NoReturn

import anyio.to_thread
import httpx
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from connectors.errors import (
    APIConnectionError,
    APITimeoutError,
    ConfigurationError,
    NeedsReauthError,
    OAuthFlowError,
    RateLimitError,
    StoreConflictError,
)
from connectors.runtime.secrets import Secrets
from connectors.runtime.store import ConnectionRecord, ConnectionStore

__all__ = [
    "LIFETIME_KEY",
    "ApiKeyAuth",
    "AuthEvent",
    "OAuthClientConfig",
    "OAuthTokenAuth",
    "PKCEPair",
    "TokenManager",
    "TokenResponse",
    "authorization_url",
    "exchange_code",
    "hash_state",
    "new_pkce_pair",
    "new_state",
    "refresh_grant",
]

logger = logging.getLogger(__name__)


def _redact(value: str | None) -> str:
    return "None" if value is None else "'***'"


class ApiKeyAuth(httpx.Auth):
    """Bearer API-key auth. The key is never shown by ``repr`` or ``str``.

    Args:
        api_key: the key, or a function returning the current key (read on every request, so that an open
            connection picks up a key replaced by a reconnect).

    Raises:
        ConfigurationError: the key is empty (for a function: when a request is sent).
    """

    def __init__(self, api_key: str | Callable[[], str | None]) -> None:
        if callable(api_key):
            self._current: Callable[[], str | None] = api_key
        else:
            key = _check_key(api_key)
            self._current = lambda: key

    def __repr__(self) -> str:
        return "ApiKeyAuth(api_key='***')"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Set the ``Authorization`` header."""
        request.headers["Authorization"] = f"Bearer {_check_key(self._current())}"
        yield request


def _check_key(api_key: str | None) -> str:
    if not api_key or not api_key.strip():
        raise ConfigurationError("api_key is empty")
    return api_key.strip()


@dataclass(frozen=True, slots=True)
class OAuthClientConfig:
    """An OAuth client registered with the provider (Morph's "whitelabel" client id/secret).

    Attributes:
        client_id: the OAuth client id.
        client_secret: the secret for confidential clients; ``None`` for public clients (PKCE only).
        authorize_url: the provider's authorization endpoint.
        token_url: the provider's token endpoint.
        auth_method: ``client_secret_post`` (default), ``client_secret_basic`` or ``none``.
    """

    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    authorize_url: str = ""
    token_url: str = ""
    auth_method: str = "client_secret_post"

    def __repr__(self) -> str:
        return (
            f"OAuthClientConfig(client_id={self.client_id!r}, client_secret={_redact(self.client_secret)}, "
            f"authorize_url={self.authorize_url!r}, token_url={self.token_url!r})"
        )


@dataclass(frozen=True, slots=True)
class PKCEPair:
    """A PKCE code verifier and its S256 challenge."""

    verifier: str = field(repr=False)
    challenge: str


def new_pkce_pair() -> PKCEPair:
    """Return a fresh PKCE pair (verifier of 64 url-safe random bytes' worth, S256 challenge)."""
    verifier = secrets.token_urlsafe(64)[:128]
    return PKCEPair(verifier=verifier, challenge=create_s256_code_challenge(verifier))


def new_state() -> str:
    """Return an unguessable OAuth ``state`` value."""
    return secrets.token_urlsafe(32)


def hash_state(state: str) -> str:
    """Hash a state for storage (the store never holds a usable state)."""
    return hashlib.sha256(state.encode()).hexdigest()


def authorization_url(
    config: OAuthClientConfig, *, redirect_uri: str, scopes: Iterable[str], state: str, pkce: PKCEPair
) -> str:
    """Build the provider authorization URL (``response_type=code``, PKCE S256)."""
    return str(
        prepare_grant_uri(
            config.authorize_url,
            client_id=config.client_id,
            response_type="code",
            redirect_uri=redirect_uri,
            scope=" ".join(scopes),
            state=state,
            code_challenge=pkce.challenge,
            code_challenge_method="S256",
        )
    )


@dataclass(frozen=True, slots=True)
class TokenResponse:
    """The useful part of a token endpoint response. Secrets are redacted in repr.

    Attributes:
        access_token: the new access token.
        refresh_token: the new refresh token, ``None`` when the response has none.
        token_type: usually ``Bearer``.
        expires_at: expiry in epoch seconds (counted from when the request was sent), or ``None``.
        scopes: the granted scopes when the response says (``scope``), else ``None``.
        lifetime: ``expires_in`` as sent by the provider, or ``None``.
    """

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    token_type: str
    expires_at: float | None
    scopes: tuple[str, ...] | None
    lifetime: float | None = None

    def __repr__(self) -> str:
        return (
            f"TokenResponse(access_token='***', refresh_token={_redact(self.refresh_token)}, "
            f"token_type={self.token_type!r}, expires_at={self.expires_at!r}, scopes={self.scopes!r})"
        )

    def to_secrets(self, *, previous: Secrets | None = None) -> Secrets:
        """The credentials to store: keeps ``previous``'s refresh token when the response has none.

        Args:
            previous: the credentials being replaced (their ``extra`` entries are kept).

        Returns:
            The new :class:`~connectors.runtime.secrets.Secrets`.
        """
        extra = dict(previous.extra) if previous is not None else {}
        extra.pop(LIFETIME_KEY, None)
        if self.lifetime is not None:
            extra[LIFETIME_KEY] = repr(self.lifetime)
        return Secrets(
            access_token=self.access_token,
            refresh_token=self.refresh_token or (previous.refresh_token if previous is not None else None),
            token_type=self.token_type,
            extra=extra,
        )


LIFETIME_KEY: Final = "access_lifetime"
"""``Secrets.extra`` entry holding the access token's lifetime (``expires_in``), which bounds the refresh margin."""


def _parse_token(body: Mapping[str, Any], *, now: float) -> TokenResponse:
    access = body.get("access_token")
    if not isinstance(access, str) or not access:
        raise OAuthFlowError("the token endpoint returned no access_token", error="invalid_response")
    expires_in = body.get("expires_in")
    lifetime: float | None = None
    if isinstance(expires_in, str):
        try:
            expires_in = float(expires_in)
        except ValueError:
            expires_in = None
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and expires_in > 0:
        lifetime = float(expires_in)
    scope = body.get("scope")
    scopes = tuple(scope.split()) if isinstance(scope, str) else None
    refresh = body.get("refresh_token")
    return TokenResponse(
        access_token=access,
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        token_type=str(body.get("token_type") or "Bearer"),
        expires_at=None if lifetime is None else now + lifetime,
        scopes=scopes,
        lifetime=lifetime,
    )


class _TokenEndpointError(OAuthFlowError):
    """The token endpoint refused a grant (``error`` holds the RFC 6749 code)."""


async def _token_request(
    http: httpx.AsyncClient,
    config: OAuthClientConfig,
    grant_type: str,
    *,
    clock: Callable[[], float],
    **params: Any,
) -> TokenResponse:
    if not config.token_url:
        raise ConfigurationError("the OAuth client has no token_url")
    if config.auth_method == "client_secret_post" and config.client_secret:
        params["client_secret"] = config.client_secret
    body = prepare_token_request(grant_type, client_id=config.client_id, **params)
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
    auth: httpx.Auth | None = None
    if config.auth_method == "client_secret_basic" and config.client_secret:
        auth = httpx.BasicAuth(config.client_id, config.client_secret)
    sent_at = clock()  # lifetimes count from the request: never later than the provider's own clock
    try:
        response = await http.post(
            config.token_url,
            content=body.encode(),
            headers=headers,
            auth=auth or httpx.USE_CLIENT_DEFAULT,
            extensions={"connectors.idempotent": False},
        )
    except httpx.TimeoutException as exc:
        raise APITimeoutError(
            "the OAuth token endpoint did not answer in time", method="POST", url=_no_query(config.token_url)
        ) from exc
    except httpx.TransportError as exc:
        raise APIConnectionError(
            f"could not reach the OAuth token endpoint: {type(exc).__name__}",
            method="POST",
            url=_no_query(config.token_url),
        ) from exc
    try:
        payload = response.json()
    except ValueError:
        payload = {}
    if response.status_code >= 400 or not isinstance(payload, dict) or "error" in payload:
        error = str(payload.get("error") or "server_error") if isinstance(payload, dict) else "server_error"
        description = payload.get("error_description") if isinstance(payload, dict) else None
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise APIConnectionError(
                f"the OAuth token endpoint failed with {response.status_code}",
                method="POST",
                url=_no_query(config.token_url),
            )
        raise _TokenEndpointError(
            f"the token endpoint refused the {grant_type} grant: {error}"
            + (f" ({description})" if isinstance(description, str) and description else ""),
            error=error,
        )
    return _parse_token(payload, now=sent_at)


def _no_query(url: str) -> str:
    return str(httpx.URL(url).copy_with(query=None, fragment=None))


async def exchange_code(
    http: httpx.AsyncClient,
    config: OAuthClientConfig,
    *,
    code: str,
    redirect_uri: str,
    code_verifier: str,
    clock: Callable[[], float] = time.time,
) -> TokenResponse:
    """Exchange an authorization code (with its PKCE verifier) for tokens.

    Args:
        http: the client to send the token request with.
        config: the OAuth client.
        code: the authorization code from the callback.
        redirect_uri: the redirect URI of the authorization request.
        code_verifier: the PKCE verifier whose S256 challenge was in the authorization URL.
        clock: time source (epoch seconds) for the token's expiry.

    Returns:
        The tokens.

    Raises:
        OAuthFlowError: the provider refused the code or verifier.
        APIConnectionError: the token endpoint was unreachable or failed (5xx).
    """
    return await _token_request(
        http,
        config,
        "authorization_code",
        clock=clock,
        code=code,
        redirect_uri=redirect_uri,
        code_verifier=code_verifier,
    )


async def refresh_grant(
    http: httpx.AsyncClient,
    config: OAuthClientConfig,
    *,
    refresh_token: str,
    clock: Callable[[], float] = time.time,
) -> TokenResponse:
    """Run the refresh-token grant.

    Args:
        http: the client to send the token request with.
        config: the OAuth client.
        refresh_token: the current refresh token.
        clock: time source (epoch seconds) for the token's expiry.

    Returns:
        The tokens (``refresh_token`` is ``None`` when the provider did not rotate it).

    Raises:
        OAuthFlowError: refused (``error == "invalid_grant"`` when the refresh token is no longer valid).
        APIConnectionError: the token endpoint was unreachable or failed (5xx).
    """
    return await _token_request(http, config, "refresh_token", clock=clock, refresh_token=refresh_token)


@dataclass(frozen=True, slots=True)
class AuthEvent:
    """Something happened to a connection's credential (``refreshed``, ``needs_reauth``)."""

    kind: str
    connection_id: str
    connector_id: str
    owner_id: str
    reason: str | None = None
    at: float = field(default_factory=time.time)


AuthEventHandler = Callable[[AuthEvent], Awaitable[None] | None]

# One asyncio.Lock per (event loop, connection id): single-flight within a loop. Threads and processes
# are serialised by the store's row lock.
_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()
# Refreshes in flight: they run as their own tasks (see TokenManager.refresh); keep them referenced.
_IN_FLIGHT: set[asyncio.Task[None]] = set()


def _inprocess_lock(connection_id: str) -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    with _LOCKS_GUARD:
        per_loop = _LOCKS.setdefault(loop, {})
        lock = per_loop.get(connection_id)
        if lock is None:
            lock = per_loop[connection_id] = asyncio.Lock()
        return lock


def _settle(task: asyncio.Task[None]) -> None:
    _IN_FLIGHT.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: the caller that awaited it (if still there) got it already


class _RefreshLock:
    """The store's refresh lock, held from async code without ever leaking it.

    ``ConnectionStore.refresh_lock`` is a synchronous context manager (a database transaction); it is entered
    and exited in worker threads. If the awaiting task is cancelled while the thread takes the lock, the
    thread releases it as soon as it has it; the release itself cannot be cancelled half-way.
    """

    def __init__(self, store: ConnectionStore, connection_id: str) -> None:
        self._cm = store.refresh_lock(connection_id)
        self._guard = threading.Lock()
        self._entered = False
        self._abandoned = False
        self._exited = False

    def _enter(self) -> Any:
        locked = self._cm.__enter__()
        with self._guard:
            if not self._abandoned:
                self._entered = True
                return locked
        self._cm.__exit__(None, None, None)  # nobody is waiting for it any more
        return None

    def _exit(self, exc_info: tuple[Any, Any, Any]) -> None:
        with self._guard:
            if self._exited or not self._entered:
                return
            self._exited = True
        self._cm.__exit__(*exc_info)

    async def __aenter__(self) -> Any:
        try:
            return await anyio.to_thread.run_sync(self._enter)
        except BaseException:
            with self._guard:
                self._abandoned = True
                entered = self._entered
            if entered:
                self._exit((None, None, None))
            raise

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._exit, (exc_type, exc, tb))
        finally:
            self._exit((exc_type, exc, tb))  # no-op unless the thread never ran (cancelled at the checkpoint)


class TokenManager:
    """Keeps one OAuth connection's access token fresh (see the module docstring).

    Args:
        store: the connection store (holds the encrypted tokens and the refresh lock).
        record: the connection as last read.
        config: the OAuth client used to refresh.
        http: the client used for token requests.
        margin: refresh this many seconds before expiry (at most half the token's lifetime, so that a margin
            longer than the lifetime does not refresh on every call).
        on_event: called with an :class:`AuthEvent` after a refresh or when re-auth is needed.
        clock: time source (epoch seconds).
        scopes_to_roles: turns a token response's ``scope`` into granted roles (the connector's
            ``granted_from_scopes``: drops ``offline_access`` and the like); by default every scope is a role.
    """

    def __init__(
        self,
        *,
        store: ConnectionStore,
        record: ConnectionRecord,
        config: OAuthClientConfig,
        http: httpx.AsyncClient,
        margin: float = 300.0,
        on_event: AuthEventHandler | None = None,
        clock: Callable[[], float] = time.time,
        scopes_to_roles: Callable[[Iterable[str]], tuple[str, ...]] | None = None,
    ) -> None:
        self._store = store
        self.record = record
        self._scopes_to_roles = scopes_to_roles or (lambda scopes: tuple(sorted(scopes)))
        self._config = config
        self._http = http
        self._margin = margin
        self._on_event = on_event
        self._clock = clock
        self.refreshes = 0

    def __repr__(self) -> str:
        return f"TokenManager(connection={self.record.id!r}, version={self.record.token_version})"

    def _check_usable(self) -> None:
        if self.record.status == "needs_reauth":
            raise NeedsReauthError(
                f"connection {self.record.connector_id}/{self.record.owner_id} needs re-authorization"
                + (f": {self.record.status_reason}" if self.record.status_reason else "")
            )

    def refresh_due_at(self) -> float | None:
        """When the current access token should be refreshed (epoch seconds), ``None`` if it never expires."""
        expires_at = self.record.access_expires_at
        if expires_at is None:
            return None
        margin = self._margin
        lifetime = _lifetime(self.record)
        if lifetime is not None:
            margin = min(margin, lifetime / 2)
        return expires_at - margin

    async def access_token(self) -> tuple[str, int]:
        """Return a fresh access token and the token version it belongs to (refreshing if due).

        A proactive refresh that fails for a passing reason (token endpoint unreachable, rate limited, store
        busy) while the current token has not expired yet is logged, and the current token is used.

        Raises:
            NeedsReauthError: the connection cannot be refreshed any more.
            APIConnectionError: the token expired and the token endpoint could not be reached.
        """
        self._check_usable()
        due = self.refresh_due_at()
        now = self._clock()
        if due is not None and now >= due:
            try:
                await self.refresh(stale_version=self.record.token_version)
            except (APIConnectionError, RateLimitError, StoreConflictError) as exc:
                expires_at = self.record.access_expires_at
                if expires_at is None or self._clock() >= expires_at:
                    raise
                logger.warning(
                    "connection %s: proactive token refresh failed (%s); using the current token, valid %.0fs more",
                    self.record.id,
                    type(exc).__name__,
                    expires_at - self._clock(),
                )
        token = self.record.secrets.access_token
        if not token:
            raise NeedsReauthError(f"connection {self.record.id} has no access token")
        return token, self.record.token_version

    async def refresh(self, *, stale_version: int) -> None:
        """Refresh unless someone already replaced the token of ``stale_version``.

        The refresh runs as its own task, so cancelling the caller never interrupts it half-way (a rotated
        refresh token that was not saved would be lost for good); the caller gets its outcome.

        Raises:
            NeedsReauthError: the refresh token was refused for good (the connection is marked).
            APIConnectionError: the token endpoint was unreachable; nothing is marked.
        """
        task = asyncio.ensure_future(self._refresh(stale_version))
        _IN_FLIGHT.add(task)
        task.add_done_callback(_settle)
        await asyncio.shield(task)

    async def _refresh(self, stale_version: int) -> None:
        async with _inprocess_lock(self.record.id):
            fresh = await anyio.to_thread.run_sync(self._store.get_by_id, self.record.id)
            if fresh is None:
                raise NeedsReauthError(f"connection {self.record.id} was deleted")
            self.record = fresh
            self._check_usable()
            if fresh.token_version != stale_version:
                return  # another task, thread or process refreshed already
            await self._refresh_locked(stale_version)

    async def _refresh_locked(self, stale_version: int) -> None:
        # Nothing may raise inside the lock on purpose: leaving it with an exception rolls the transaction
        # back, and with it the needs_reauth mark. Decide inside, commit, then raise.
        refused: OAuthFlowError | None = None
        async with _RefreshLock(self._store, self.record.id) as locked:
            current = locked.record
            if current.token_version != stale_version:
                self.record = current
                return
            refresh_token = current.secrets.refresh_token
            if not refresh_token:
                reason = "the access token expired and there is no refresh token"
                self.record = await anyio.to_thread.run_sync(locked.mark_needs_reauth, reason)
            else:
                try:
                    token = await refresh_grant(
                        self._http, self._config, refresh_token=refresh_token, clock=self._clock
                    )
                except OAuthFlowError as exc:
                    refused = exc
                    if exc.error != "invalid_grant":
                        reason = f"refresh refused: {exc.error}"
                        self.record = await anyio.to_thread.run_sync(locked.mark_needs_reauth, reason)
                else:
                    granted = current.granted_roles if token.scopes is None else self._scopes_to_roles(token.scopes)
                    new_secrets = token.to_secrets(previous=current.secrets)
                    self.record = await anyio.to_thread.run_sync(
                        lambda: locked.save_tokens(
                            new_secrets, access_expires_at=token.expires_at, granted_roles=granted
                        )
                    )
                    self.refreshes += 1
                    logger.info("refreshed the access token of connection %s", current.id)
        if self.record.status == "needs_reauth":
            await self._gave_up(self.record.status_reason or "refresh failed", cause=refused)
        if refused is None:
            await self._emit("refreshed", None)
            return
        # invalid_grant: the refresh token we used is dead. If a writer that does not take our lock (another
        # deployment, an operator tool) rotated it meanwhile, the store holds newer tokens: adopt them.
        # Decide under a fresh lock (an in-memory store has a single connection: no reads while locked).
        async with _RefreshLock(self._store, current.id) as locked:
            latest = locked.record
            if latest.status == "active" and (
                latest.token_version != current.token_version
                or latest.secrets.refresh_token != current.secrets.refresh_token
            ):
                logger.warning(
                    "connection %s: invalid_grant after a concurrent rotation (token_version %d -> %d); "
                    "using the stored tokens",
                    current.id,
                    current.token_version,
                    latest.token_version,
                )
                self.record = latest
                return
            self.record = await anyio.to_thread.run_sync(locked.mark_needs_reauth, "refresh refused: invalid_grant")
        await self._gave_up("refresh refused: invalid_grant", cause=refused)

    async def _gave_up(self, reason: str, *, cause: Exception | None) -> NoReturn:
        """Tell the handlers that the connection (already marked) needs re-auth; raise :class:`NeedsReauthError`."""
        await self._emit("needs_reauth", reason)
        record = self.record
        raise NeedsReauthError(
            f"connection {record.connector_id}/{record.owner_id} needs re-authorization ({reason})"
        ) from cause

    async def _emit(self, kind: str, reason: str | None) -> None:
        if self._on_event is None:
            return
        event = AuthEvent(kind, self.record.id, self.record.connector_id, self.record.owner_id, reason, self._clock())
        try:
            result = self._on_event(event)
            if result is not None:
                await result
        except Exception:
            logger.exception("auth event handler failed for %s", kind)


def _lifetime(record: ConnectionRecord) -> float | None:
    raw = record.secrets.extra.get(LIFETIME_KEY)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if value > 0 else None


class OAuthTokenAuth(httpx.Auth):
    """``httpx.Auth`` over a :class:`TokenManager`: fresh token per request, one refresh+retry on 401."""

    requires_response_body = False

    def __init__(self, manager: TokenManager) -> None:
        self._manager = manager

    def __repr__(self) -> str:
        return f"OAuthTokenAuth({self._manager!r})"

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Not supported: use the async client (the sync facade runs it for you)."""
        raise RuntimeError("OAuthTokenAuth is async-only; use connectors.SyncConnectors for sync code")

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """Attach the token; after a 401, refresh once (unless already refreshed elsewhere) and retry."""
        token, version = await self._manager.access_token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            await response.aread()
            await self._manager.refresh(stale_version=version)
            token, _ = await self._manager.access_token()
            request.headers["Authorization"] = f"Bearer {token}"
            yield request
