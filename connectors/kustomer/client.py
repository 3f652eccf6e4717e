"""Async Kustomer API client over httpx.

The client knows hosts and regions, the org-wide rate budget, idempotency of each request, and how
Kustomer's error bodies become typed errors. It knows nothing about unified models: mappers do that.

Hosts (kustomer-api.md §1.1): ``us`` -> ``api.kustomerapp.com`` (pod prod1), ``eu`` ->
``api.prod2.kustomerapp.com``, ``in`` -> ``api.prod4.kustomerapp.com``; an org subdomain
``<org>.api.kustomerapp.com`` routes to the org's region by itself; or any ``base_url`` (the sandbox).

Error bodies come in two documented shapes (§4.1), both understood::

    {"errors": [{"code": "bad_request", "message": "...", "meta": {}}]}
    {"errors": [{"status": "400", "code": "...", "title": "...", "detail": "...", "source": {...}}]}
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import quote

import httpx

from connectors.__about__ import __version__
from connectors.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ConfigurationError,
    RateLimitError,
    RegionMismatchError,
    ResponseValidationError,
    error_class_for_status,
)
from connectors.runtime.ratelimit import Bucket, RateLimiter
from connectors.runtime.transport import (
    EXT_BUCKETS,
    EXT_HEADERS_BUCKET,
    EXT_IDEMPOTENT,
    ResilientTransport,
    RetryPolicy,
    server_retry_at,
)

__all__ = [
    "POD_REGIONS",
    "REGIONS",
    "KustomerClient",
    "error_from_response",
    "lookup_path",
    "resolve_base_url",
]

REGIONS: Final[Mapping[str, tuple[str, str]]] = {
    "us": ("prod1", "https://api.kustomerapp.com"),
    "eu": ("prod2", "https://api.prod2.kustomerapp.com"),
    "in": ("prod4", "https://api.prod4.kustomerapp.com"),
}
"""Region -> (pod, API base URL)."""

POD_REGIONS: Final[Mapping[str, str]] = {pod: region for region, (pod, _url) in REGIONS.items()}

_ORG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_POD_MISMATCH_RE = re.compile(r"associated with pod (\w+) but request is being handled by (\w+)")
_REQUEST_ID_HEADERS: Final = ("x-request-id", "x-kustomer-request-id", "x-amzn-requestid")
_SEARCH_PATHS: Final = ("/v1/customers/search", "/v1/customers/archive/search")


def resolve_base_url(*, region: str | None = None, org: str | None = None, base_url: str | None = None) -> str:
    """Return the API base URL (no trailing slash, no ``/v1``) for a connection.

    Precedence: an explicit ``base_url``, then the org subdomain, then the region (default ``us``).

    Raises:
        ConfigurationError: unknown region, malformed org name or base URL (each is checked when given, even
            when a higher-precedence value makes it unused).
    """
    key = (region or "us").lower()
    if key not in REGIONS:
        raise ConfigurationError(f"unknown Kustomer region {region!r}; use one of {', '.join(REGIONS)}")
    if org and not _ORG_RE.match(org):
        raise ConfigurationError(f"org must be a Kustomer org subdomain like 'acme', got {org!r}")
    if base_url:
        parsed = httpx.URL(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ConfigurationError(f"base_url must be an http(s) URL with a host, got {base_url!r}")
        return str(parsed.copy_with(path=parsed.path.rstrip("/") or "", query=None, fragment=None)).rstrip("/")
    if org:
        return f"https://{org}.api.kustomerapp.com"
    return REGIONS[key][1]


def lookup_path(collection: str, key: str, value: str) -> str:
    """Build a value-in-path lookup such as ``/v1/customers/email=sam%40example.com``.

    The value is percent-encoded (``/``, ``?``, ``#`` and ``%`` can never change the path).
    """
    return f"/v1/{collection}/{key}={quote(value, safe='@+')}"


def _first_error(body: Any) -> dict[str, Any]:
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return errors[0]
        if isinstance(errors, dict):
            return errors
        keys = ("error", "errorCode", "message", "error_description")
        if any(k in body for k in keys):
            return {
                "code": body.get("errorCode") or body.get("error"),
                "message": body.get("message") or body.get("error_description"),
            }
    return {}


def error_from_response(response: httpx.Response) -> APIStatusError:
    """Turn an error response into the matching typed :class:`~connectors.errors.APIStatusError`."""
    try:
        body: Any = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = response.text[:2000]
    first = _first_error(body)
    code = first.get("code")
    detail = first.get("detail") or first.get("message") or first.get("title")
    code = str(code) if code is not None else None
    detail = str(detail) if detail is not None else None
    request_id = next((response.headers[h] for h in _REQUEST_ID_HEADERS if h in response.headers), None)
    request = response.request
    status = response.status_code
    summary = f"Kustomer returned {status} for {request.method} {request.url.path}"
    if detail:
        summary += f": {detail}"
    elif code:
        summary += f": {code}"
    common: dict[str, Any] = {
        "status_code": status,
        "error_code": code,
        "detail": detail,
        "request_id": request_id,
        "body": body,
        "headers": {k.lower(): v for k, v in response.headers.items() if k.lower() != "set-cookie"},
        "method": request.method,
        "url": str(request.url.copy_with(query=None)),
    }
    if status == 401 and detail:
        match = _POD_MISMATCH_RE.search(detail)
        if match:
            token_pod, _handled = match.groups()
            expected = POD_REGIONS.get(token_pod)
            hint = f"set region={expected!r}" if expected else f"use the API host of pod {token_pod}"
            return RegionMismatchError(
                f"{summary}. The credential belongs to Kustomer pod {token_pod}: {hint} "
                "(or use your org subdomain, which routes to the right region)",
                expected_region=expected,
                **common,
            )
    if status == 429:
        return RateLimitError(summary, retry_at=reset_at_from_headers(response.headers), **common)
    cls = error_class_for_status(status)
    return cls(summary, **common)


def reset_at_from_headers(headers: httpx.Headers, *, now: float | None = None) -> float | None:
    """Epoch seconds at which the budget refills, from ``x-ratelimit-reset`` (epoch or delay) or ``Retry-After``."""
    return server_retry_at(headers, now=time.time() if now is None else now)


class KustomerClient:
    """Async client for the Kustomer REST API.

    Args:
        auth: an ``httpx.Auth`` that sets the bearer token (API key or OAuth; see ``runtime.auth``).
        region: ``us``, ``eu`` or ``in``.
        org: org subdomain (``acme`` -> ``https://acme.api.kustomerapp.com``).
        base_url: explicit base URL (the sandbox); wins over ``org`` and ``region``.
        transport: the innermost transport (tests: the sandbox's in-process transport).
        limiter: the rate limiter holding the org budget (in-process or Redis).
        budget_key: identifies the org budget shared by every connection of the org.
        rate_limit: requests per minute assumed before Kustomer's ``x-ratelimit-limit`` is seen.
        search_limit: searches per minute (100 for API keys).
        rate_window: seconds of the rate window (Kustomer: 60; the sandbox can compress it).
        retry_policy: retry and backoff settings.
        timeout: per-request timeout in seconds.
        user_agent: identifies the integration (Kustomer recommends one).
    """

    def __init__(
        self,
        *,
        auth: httpx.Auth | None = None,
        region: str | None = None,
        org: str | None = None,
        base_url: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        limiter: RateLimiter | None = None,
        budget_key: str | None = None,
        rate_limit: int = 1000,
        search_limit: int = 100,
        rate_window: float = 60.0,
        retry_policy: RetryPolicy | None = None,
        timeout: float = 30.0,
        user_agent: str | None = None,
    ) -> None:
        self.base_url = resolve_base_url(region=region, org=org, base_url=base_url)
        self.region = region
        key = budget_key or httpx.URL(self.base_url).host
        self.org_bucket = Bucket(f"kustomer:{key}", rate_limit, rate_window)
        self.search_bucket = Bucket(f"kustomer:{key}:search", search_limit, rate_window)
        self._transport = ResilientTransport(transport, policy=retry_policy or RetryPolicy(), limiter=limiter)
        self._limited = limiter is not None
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            auth=auth,
            transport=self._transport,
            timeout=timeout,
            headers={
                "User-Agent": user_agent or f"unified-connectors/{__version__}",
                "Accept": "application/json",
            },
            follow_redirects=False,
            event_hooks={"request": [self._budget_by_default]},
        )

    def __repr__(self) -> str:
        return f"KustomerClient(base_url={self.base_url!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    @property
    def http(self) -> httpx.AsyncClient:
        """The underlying ``httpx.AsyncClient`` (auth, retries and rate budget included).

        Requests sent on it without ``connectors.buckets`` are charged to the org budget (and searches to
        the search budget too), so raw proxy calls share the budget with everything else.
        """
        return self._http

    async def _budget_by_default(self, request: httpx.Request) -> None:
        """Charge requests built on :attr:`http` directly (the proxy, backends) to the org budget too."""
        if EXT_BUCKETS in request.extensions:
            return
        search = request.method == "POST" and request.url.path.endswith(_SEARCH_PATHS)
        request.extensions.update(self._extensions(request.method, idempotent=None, search=search))

    def _extensions(self, method: str, *, idempotent: bool | None, search: bool) -> dict[str, Any]:
        ext: dict[str, Any] = {}
        if idempotent is not None:
            ext[EXT_IDEMPOTENT] = idempotent
        buckets = [self.org_bucket, self.search_bucket] if search else [self.org_bucket]
        ext[EXT_BUCKETS] = tuple(buckets)
        ext[EXT_HEADERS_BUCKET] = self.search_bucket if search else self.org_bucket
        return ext

    async def send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        json_body: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        search: bool = False,
    ) -> httpx.Response:
        """Send a request and return the response, whatever its status (the proxy uses this).

        Raises:
            APIConnectionError: the connection failed after retries (``APITimeoutError`` on timeouts).
            RateLimitError: the rate budget could not be had within the wait cap.
        """
        request = self._http.build_request(
            method,
            path,
            params=params,  # type: ignore[arg-type]
            json=json_body,
            content=content,
            headers=headers,
            extensions=self._extensions(method, idempotent=idempotent, search=search),
        )
        try:
            return await self._http.send(request)
        except httpx.TimeoutException as exc:
            raise APITimeoutError(
                f"Kustomer did not answer {method} {request.url.path} in time", method=method, url=_clean(request)
            ) from exc
        except httpx.TransportError as exc:
            raise APIConnectionError(
                f"could not reach Kustomer for {method} {request.url.path}: {type(exc).__name__}",
                method=method,
                url=_clean(request),
            ) from exc

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        search: bool = False,
    ) -> httpx.Response:
        """Send a request and raise the typed error for any status >= 400.

        Raises:
            APIStatusError: a subclass per status (``NotFoundError``, ``RateLimitError``...).
            APIConnectionError: see :meth:`send`.
        """
        response = await self.send(
            method, path, params=params, json_body=json_body, headers=headers, idempotent=idempotent, search=search
        )
        if response.status_code >= 400:
            await response.aread()
            raise error_from_response(response)
        return response

    async def json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        json_body: Any = None,
        idempotent: bool | None = None,
        search: bool = False,
    ) -> Any:
        """Send a request and return its decoded JSON body (``None`` for 204).

        Raises:
            ResponseValidationError: the body is not JSON.
            APIStatusError: see :meth:`request`.
        """
        response = await self.request(
            method, path, params=params, json_body=json_body, idempotent=idempotent, search=search
        )
        if response.status_code == 204 or not response.content:
            return None
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ResponseValidationError(
                f"Kustomer answered {method} {path} with a body that is not JSON", method=method, url=path
            ) from exc
        if _ESCAPED_SURROGATE.search(response.content):
            body = _without_lone_surrogates(body)
        return body

    async def content(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        json_body: Any = None,
        idempotent: bool | None = None,
        search: bool = False,
    ) -> bytes:
        """Like :meth:`json` but return the raw body bytes (parse them with wire models directly)."""
        response = await self.request(
            method, path, params=params, json_body=json_body, idempotent=idempotent, search=search
        )
        return response.content

    # -- identity -----------------------------------------------------------------------------------

    async def current_token(self) -> dict[str, Any]:
        """``GET /v1/auth/tokens/current``: the credential's roles (works whatever the roles)."""
        body = await self.json("GET", "/v1/auth/tokens/current")
        return _data(body, "/v1/auth/tokens/current")

    async def current_user(self) -> dict[str, Any]:
        """``GET /v1/users/current``: the (machine) user behind the credential."""
        body = await self.json("GET", "/v1/users/current")
        return _data(body, "/v1/users/current")

    # -- Apps Platform commands -----------------------------------------------------------------------

    async def run_command(
        self,
        name: str,
        *,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        args: Mapping[str, str] | None = None,
    ) -> Any:
        """Run an Apps Platform command: ``POST /v1/commands/{name}/run`` with ``{body, headers, args}``.

        ``headers`` may reference secret app settings (``{"Authorization": "Bearer {{authToken}}"}``):
        Kustomer fills them in server-side, so the secret never passes through this client.
        """
        payload: dict[str, Any] = {"body": body, "headers": dict(headers or {}), "args": dict(args or {})}
        return await self.json("POST", f"/v1/commands/{quote(name, safe='')}/run", json_body=payload)


_ESCAPED_SURROGATE: Final = re.compile(rb"\\u[dD][89a-fA-F]")
_LONE_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _without_lone_surrogates(value: Any) -> Any:
    r"""Replace unpaired surrogates (JSON escapes such as a truncated emoji's ``\ud83d``) with U+FFFD.

    ``json.loads`` accepts them, but they cannot be encoded as UTF-8: a record holding one could be read and
    then fail wherever it is written out (a JSON response, a JSONL export, a webhook forward).
    """
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_without_lone_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {_without_lone_surrogates(k): _without_lone_surrogates(v) for k, v in value.items()}
    return value


def _data(body: Any, path: str) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
        raise ResponseValidationError(f"expected a JSON:API object from {path}", method="GET", url=path)
    data: dict[str, Any] = body["data"]
    return data


def _clean(request: httpx.Request) -> str:
    return str(request.url.copy_with(query=None))
