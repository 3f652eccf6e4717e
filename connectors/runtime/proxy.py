r"""Raw passthrough requests that can never leave the connection's provider API host.

A proxy path is a *path* on the provider API host: ``/v1/customers?page=2``. Refused, with a
:class:`~connectors.errors.ProxyRefusedError` saying why:

* anything with a scheme or authority (``https://evil``, ``//evil``, ``http:/x``), userinfo (``@``), or a
  backslash (browsers and some servers treat ``\\`` as ``/``);
* dot segments (``..`` or ``.``), raw or percent-encoded (``%2e%2e``), and encoded slashes (``%2f``,
  ``%5c``) that a server might decode into new segments;
* control characters and whitespace.

After the URL is built it is checked again: same scheme, host and port as the base URL, and under its path.
Caller headers can't set ``Authorization``, ``Cookie``, ``Host`` or hop-by-hop headers. Redirects are never
followed (the client is built with ``follow_redirects=False``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import unquote

import httpx

from connectors.errors import ProxyRefusedError

__all__ = ["ALLOWED_METHODS", "build_proxy_request", "check_proxy_path"]

ALLOWED_METHODS: Final = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
_DROP_HEADERS: Final = frozenset(
    {
        "authorization",
        "cookie",
        "host",
        "connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-authenticate",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "x-forwarded-for",
        "x-forwarded-host",
        "forwarded",
    }
)
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_ENCODED_BAD = re.compile(r"%(2f|5c|2e|00|0a|0d|09|25)", re.IGNORECASE)


def check_proxy_path(path: str) -> str:
    """Validate a proxy path and return it (with a leading ``/``).

    Raises:
        ProxyRefusedError: the path could leave the provider API host (the message says why).
    """
    if not isinstance(path, str) or not path:
        raise ProxyRefusedError("the proxy path is empty")
    if _CONTROL.search(path):
        raise ProxyRefusedError("the proxy path contains whitespace or control characters")
    if "\\" in path:
        raise ProxyRefusedError("the proxy path contains a backslash")
    if "@" in path.split("?", 1)[0]:
        raise ProxyRefusedError("the proxy path contains '@' (userinfo tricks are refused)")
    if not path.startswith("/"):
        path = "/" + path
    if path.startswith("//"):
        raise ProxyRefusedError("the proxy path starts with '//' (a network-path reference to another host)")
    head = path.split("?", 1)[0].split("#", 1)[0]
    if re.match(r"^/*[a-zA-Z][a-zA-Z0-9+.-]*:", head):
        raise ProxyRefusedError("absolute URLs are refused: give a path such as /v1/customers")
    if "#" in path:
        raise ProxyRefusedError("the proxy path contains a fragment")
    if _ENCODED_BAD.search(head):
        raise ProxyRefusedError("encoded slashes, dots, percent signs or control characters are refused in the path")
    segments = unquote(head).split("/")
    if any(segment in (".", "..") for segment in segments):
        raise ProxyRefusedError("dot segments ('.' or '..') are refused in the path")
    return path


def build_proxy_request(
    http: httpx.AsyncClient,
    method: str,
    path: str,
    *,
    params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
    json: Any = None,
    content: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    allowed_prefixes: Sequence[str] = (),
) -> httpx.Request:
    """Build a request on ``http``'s base URL for ``path``, refusing anything that leaves that host.

    Raises:
        ProxyRefusedError: bad method or path, or the built URL is not on the base host.
    """
    verb = method.upper()
    if verb not in ALLOWED_METHODS:
        raise ProxyRefusedError(f"method {method!r} is not allowed through the proxy")
    path = check_proxy_path(path)
    if allowed_prefixes and not any(path.split("?", 1)[0].startswith(prefix) for prefix in allowed_prefixes):
        raise ProxyRefusedError(f"the proxy only reaches the provider API ({', '.join(allowed_prefixes)}...)")
    clean_headers = {k: v for k, v in (headers or {}).items() if k.lower() not in _DROP_HEADERS}
    extensions: dict[str, Any] = {}
    if verb == "POST":
        extensions["connectors.idempotent"] = False
    # A query in the path and ``params`` are combined (httpx would let ``params`` replace the path's query).
    bare, _, query = path.partition("?")
    merged = httpx.QueryParams(query)
    if params:
        merged = httpx.QueryParams([*merged.multi_items(), *httpx.QueryParams(params).multi_items()])  # type: ignore[arg-type]
    request = http.build_request(
        verb,
        bare,
        params=merged,
        json=json,
        content=content,
        headers=clean_headers,
        extensions=extensions,
    )
    base = http.base_url
    url = request.url
    if (url.scheme, url.host, url.port) != (base.scheme, base.host, base.port):
        raise ProxyRefusedError(f"the proxy path resolves to another host ({url.host!r})")
    base_path = base.path.rstrip("/")
    if base_path and not url.path.startswith(base_path + "/"):
        raise ProxyRefusedError("the proxy path resolves outside the provider API base path")
    return request
