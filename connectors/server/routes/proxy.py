"""``ANY /proxy/{path}``: raw passthrough to Kustomer with the connection's auth, budget and retries.

The path is checked by :func:`connectors.runtime.proxy.check_proxy_path` (no other host, no dot segments, no
encoded slashes...); a refusal is ``400 proxy_refused``. Only a short list of request headers is forwarded
(never ``Authorization``, cookies or our ``X-Connectors-*``), and the connection-selection query parameters
(``ownerId``, ``connectionId``, ``connectorId``, ``label``) are not passed on. Kustomer's status and body are
relayed as they are, with its content type, rate-limit headers and request id.
"""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from connectors.server.security import ConnectionDep, PrincipalDep

__all__ = ["FORWARDED_REQUEST_HEADERS", "RELAYED_RESPONSE_HEADERS", "build_router"]

FORWARDED_REQUEST_HEADERS: Final = frozenset(
    {
        "accept",
        "accept-language",
        "content-type",
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
        "idempotency-key",
    }
)
RELAYED_RESPONSE_HEADERS: Final = frozenset(
    {
        "content-type",
        "etag",
        "last-modified",
        "retry-after",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "x-request-id",
    }
)
_SELECTION_PARAMS: Final = frozenset({"ownerId", "connectionId", "connectorId", "label"})
_METHODS: Final = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


async def proxy(request: Request, path: str, principal: PrincipalDep, connection: ConnectionDep) -> Response:
    """Send the request on to Kustomer and relay its answer (whatever the status)."""
    principal.require("proxy")
    target = _upstream_path(request, path)
    params = [(k, v) for k, v in request.query_params.multi_items() if k not in _SELECTION_PARAMS]
    headers = {k: v for k, v in request.headers.items() if k.lower() in FORWARDED_REQUEST_HEADERS}
    body = await request.body()
    upstream = await connection.proxy(
        request.method, target, params=params or None, content=body or None, headers=headers
    )
    relayed = {k: v for k, v in upstream.headers.items() if k.lower() in RELAYED_RESPONSE_HEADERS}
    content = b"" if request.method == "HEAD" else upstream.content
    return Response(content=content, status_code=upstream.status_code, headers=relayed)


def _upstream_path(request: Request, path: str) -> str:
    # Keep the client's own encoding, so check_proxy_path sees (and refuses) %2e%2e, %2f and friends.
    raw: bytes | None = request.scope.get("raw_path")
    if raw:
        text = raw.decode("latin-1").split("?", 1)[0]
        root = request.scope.get("root_path", "")
        if root and text.startswith(root):
            text = text[len(root) :]
        if text.startswith("/proxy/"):
            return text[len("/proxy") :]
    return "/" + path


def build_router() -> APIRouter:
    """The proxy route."""
    router = APIRouter(tags=["proxy"])
    for method in _METHODS:
        router.add_api_route(
            "/proxy/{path:path}",
            proxy,
            methods=[method],
            name=f"proxy_{method.lower()}",
            operation_id=f"proxy_{method.lower()}",
            summary=f"Raw passthrough to Kustomer ({method})",
        )
    return router
