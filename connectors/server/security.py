"""Who is calling, and which connection a request may reach.

Three kinds of caller (:class:`Principal`):

* **operator** — ``Authorization: Bearer <operator key>``. Acts for any owner; the owner of a request is
  chosen with the ``X-Connectors-Owner`` header (or the ``ownerId`` query parameter).
* **session** — ``Authorization: Bearer cs1....`` minted by ``POST /sessions``: one owner, optionally a set
  of operations. Naming another owner, or a connection of another owner, is answered ``404`` exactly like a
  connection that does not exist: a session can never learn that other owners exist.
* **local** — only when :attr:`ServerConfig.loopback_owner` is set (the embedded demo without an operator
  key): a request with no ``Authorization`` header, from a loopback address, with a loopback ``Host``
  (DNS-rebinding guard) and no cross-origin ``Origin``, acts as that owner.

Connection selection: ``X-Connectors-Connection`` (or ``connectionId``) names a connection id; otherwise
the connection is ``(connector, owner, label)`` from ``X-Connectors-Connector``/``connectorId`` (default
``kustomer``) and ``X-Connectors-Label``/``label`` (default ``""``).
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from typing import Annotated, Literal

import anyio.to_thread
from fastapi import Depends, Header, Query
from fastapi.security import HTTPBearer
from starlette.requests import HTTPConnection

from connectors.errors import NotConnectedError
from connectors.runtime.connection import Connection
from connectors.server.errors import HTTPProblem, validation_problem
from connectors.server.sessions import TOKEN_PREFIX, SessionTokenError
from connectors.server.state import server_state

__all__ = [
    "OWNER_HEADER",
    "ConnectionDep",
    "Principal",
    "PrincipalDep",
    "get_principal",
    "is_loopback_request",
    "not_found",
    "open_connection",
    "principal_from_request",
    "require_operator",
    "selected_connection",
]

OWNER_HEADER = "X-Connectors-Owner"
_MAX_OWNER = 200
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# Declared for the OpenAPI "Authorize" button; the header is parsed by get_principal itself.
_bearer = HTTPBearer(auto_error=False, description="The operator key, or a session token from POST /sessions.")


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of one request.

    Attributes:
        kind: ``operator``, ``session`` or ``local``.
        owner_id: the owner the request acts for (``None``: an operator that named none).
        operations: operations a session may perform (``None``: all).
        subject: what CSRF tokens of the Connect page are bound to (never logged).
    """

    kind: Literal["operator", "session", "local"]
    owner_id: str | None
    operations: tuple[str, ...] | None = None
    subject: str = ""

    def __repr__(self) -> str:
        return f"Principal(kind={self.kind!r}, owner_id={self.owner_id!r})"

    @property
    def is_operator(self) -> bool:
        """Whether the caller holds the operator key."""
        return self.kind == "operator"

    def can(self, operation: str) -> bool:
        """Whether the caller may perform ``operation``."""
        return self.operations is None or operation in self.operations

    def require(self, operation: str) -> None:
        """Refuse an operation the caller's session does not allow.

        Raises:
            HTTPProblem: 403 ``operation_not_allowed``.
        """
        if not self.can(operation):
            raise HTTPProblem(
                403,
                "operation_not_allowed",
                f"this session does not allow {operation}",
                extra={"operation": operation},
            )

    def require_owner(self) -> str:
        """The owner the request acts for.

        Raises:
            HTTPProblem: 422 when an operator named no owner.
        """
        if self.owner_id is None:
            raise validation_problem(
                [{"path": f"header.{OWNER_HEADER}", "message": "name the owner (or pass ownerId=...)"}]
            )
        return self.owner_id

    def reaches(self, owner_id: str) -> bool:
        """Whether the caller may reach connections of ``owner_id``."""
        return self.owner_id is None or self.owner_id == owner_id


def not_found(what: str = "resource") -> HTTPProblem:
    """The 404 answered for anything outside the caller's reach (identical to a missing one)."""
    return HTTPProblem(404, "not_found", f"no such {what}")


def _unauthorized(message: str) -> HTTPProblem:
    return HTTPProblem(401, "unauthorized", message, headers={"WWW-Authenticate": 'Bearer realm="connectors"'})


def _check_owner_value(owner: str) -> str:
    owner = owner.strip()
    if not owner or len(owner) > _MAX_OWNER:
        raise validation_problem(
            [{"path": f"header.{OWNER_HEADER}", "message": f"must be 1 to {_MAX_OWNER} characters"}]
        )
    return owner


def is_loopback_request(request: HTTPConnection) -> bool:
    """Whether the request comes from this machine and may act as the loopback owner.

    It must come from a loopback address, name a loopback host (DNS-rebinding guard) and, unless its method is
    safe (GET, HEAD, OPTIONS), not be sent by another site (``Origin``/``Sec-Fetch-Site``).
    """
    client = request.client
    if client is None:
        return False
    try:
        if not ipaddress.ip_address(client.host).is_loopback:
            return False
    except ValueError:
        return False
    host = request.headers.get("host", "")
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]", 1)[0] + "]"
    if name.lower() not in _LOOPBACK_HOSTS:
        return False
    if request.scope.get("method", "GET") in _SAFE_METHODS:
        return True
    # Unsafe methods: refuse cross-site senders (a web page POSTing to localhost, CSRF).
    origin = request.headers.get("origin")
    if origin is not None:
        bare = origin.split("://", 1)[-1].lower()
        origin_host = bare.rsplit(":", 1)[0] if not bare.startswith("[") else bare.split("]", 1)[0] + "]"
        if origin_host not in _LOOPBACK_HOSTS:
            return False
    return request.headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")


def principal_from_request(
    request: HTTPConnection, *, owner: str | None = None, cookie_token: str | None = None
) -> Principal:
    """Resolve the caller (see the module docstring).

    Args:
        request: the request.
        owner: the owner the request names (header or query), if any.
        cookie_token: a session token from the Connect page's cookie (only the Connect page passes it).

    Raises:
        HTTPProblem: 401 without valid credentials; 404 when a session names another owner.
    """
    state = server_state(request)
    named = _check_owner_value(owner) if owner is not None else None
    header = request.headers.get("authorization")
    token: str | None = None
    if header is not None:
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise _unauthorized("use Authorization: Bearer <operator key or session token>")
        token = value.strip()
    elif cookie_token:
        token = cookie_token
    if token is not None:
        if state.operator_key is not None and hmac.compare_digest(
            token.encode("utf-8", "surrogateescape"), state.operator_key.encode("utf-8")
        ):
            return Principal("operator", named, None, "operator")
        if token.startswith(TOKEN_PREFIX):
            try:
                claims = state.sessions.verify(token)
            except SessionTokenError as exc:
                raise _unauthorized(str(exc)) from None
            if named is not None and named != claims.owner_id:
                raise not_found("owner")
            return Principal("session", claims.owner_id, claims.operations, token)
        raise _unauthorized("invalid bearer token")
    local = state.config.loopback_owner
    if local is not None and is_loopback_request(request):
        if named is not None and named != local:
            raise not_found("owner")
        return Principal("local", local, None, f"local:{local}")
    raise _unauthorized("missing Authorization: Bearer <operator key or session token>")


async def get_principal(
    request: HTTPConnection,
    owner_header: Annotated[
        str | None, Header(alias=OWNER_HEADER, description="Owner (tenant) the operator acts for.")
    ] = None,
    owner_query: Annotated[str | None, Query(alias="ownerId", description="Same as X-Connectors-Owner.")] = None,
    _credentials: Annotated[object, Depends(_bearer)] = None,
) -> Principal:
    """FastAPI dependency: the caller of the request.

    Raises:
        HTTPProblem: 401 without valid credentials; 404 when a session names another owner.
    """
    if owner_header is not None and owner_query is not None and owner_header.strip() != owner_query.strip():
        raise validation_problem([{"path": "query.ownerId", "message": f"differs from the {OWNER_HEADER} header"}])
    return principal_from_request(request, owner=owner_header if owner_header is not None else owner_query)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require_operator(principal: PrincipalDep) -> Principal:
    """FastAPI dependency for operator-only routes (anyone else gets the 404 of an unknown route).

    Raises:
        HTTPProblem: 404 for sessions and local callers.
    """
    if not principal.is_operator:
        raise not_found("route")
    return principal


async def open_connection(request: HTTPConnection, principal: Principal, connection_id: str) -> Connection:
    """Open connection ``connection_id`` if the caller may reach it.

    Raises:
        HTTPProblem: 404 when it does not exist or belongs to another owner.
    """
    state = server_state(request)
    hub = state.hub
    if not connection_id or len(connection_id) > 200:
        raise not_found("connection")
    record = await anyio.to_thread.run_sync(lambda: hub.store.get_by_id(connection_id))
    if record is None or not principal.reaches(record.owner_id):
        raise not_found("connection")
    try:
        return await hub.get_by_id(connection_id)
    except NotConnectedError:
        raise not_found("connection") from None


async def selected_connection(
    request: HTTPConnection,
    principal: PrincipalDep,
    connection_header: Annotated[
        str | None, Header(alias="X-Connectors-Connection", description="A connection id (or a connector id).")
    ] = None,
    connection_query: Annotated[str | None, Query(alias="connectionId", description="A connection id.")] = None,
    connector_header: Annotated[
        str | None, Header(alias="X-Connectors-Connector", description="Connector id (default kustomer).")
    ] = None,
    connector_query: Annotated[str | None, Query(alias="connectorId", description="Connector id.")] = None,
    label_header: Annotated[str | None, Header(alias="X-Connectors-Label", description="Connection label.")] = None,
    label_query: Annotated[str | None, Query(alias="label", description="Connection label.")] = None,
) -> Connection:
    """FastAPI dependency: the connection a resource/fields/proxy request works on.

    Raises:
        HTTPProblem: 404 when there is none within the caller's reach; 422 when an operator named no owner.
    """
    state = server_state(request)
    hub = state.hub
    connection_id = connection_header or connection_query
    connector_id = connector_header or connector_query
    if connection_id and connection_id in hub.registry.connectors and connector_id is None:
        connector_id, connection_id = connection_id, None
    if connection_id:
        return await open_connection(request, principal, connection_id)
    owner = principal.require_owner()
    connector = connector_id or state.config.default_connector
    label = label_header if label_header is not None else (label_query or "")
    if connector not in hub.registry.connectors:
        raise not_found("connector")
    # NotConnectedError (404 not_connected) names only the caller's own owner: nothing about other owners.
    return await hub.get(connector, owner, label)


ConnectionDep = Annotated[Connection, Depends(selected_connection)]
