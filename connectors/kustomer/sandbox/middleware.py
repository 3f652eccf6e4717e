"""The request pipeline in front of every route (a pure ASGI middleware).

For every HTTP request:

1. an ``x-request-id`` response header; a trailing slash is stripped (``/v1/customers/`` is
   ``/v1/customers``);
2. admin and documentation routes (``/sandbox``, ``/docs``, ``/openapi.json``) skip everything below;
3. latency (+ jitter) and a slow response, then a pre-effect fault (drop, 500, 502, 503, 429 burst);
4. for ``/v1``: body size (413 above ``max_body_bytes``, ``max_hook_body_bytes`` for hook posts), bearer
   authentication (401), org budget (429). Every ``/v1`` response from here on carries ``x-ratelimit-*``
   headers (413 and 401 show the budget without consuming it); injected 5xx/drops answer before them;
5. the route; for writes, possibly an after-write fault (applied, then 502 or dropped).

OAuth endpoints (``/oauth/*``) get steps 1, 3 and 5 only.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from connectors.kustomer.sandbox.errors import SandboxError, error_body
from connectors.kustomer.sandbox.faults import DroppedConnection
from connectors.kustomer.sandbox.ratelimit import Decision
from connectors.kustomer.sandbox.store import RequestLogEntry

if TYPE_CHECKING:
    from connectors.kustomer.sandbox.app import Sandbox

__all__ = ["SEARCH_PATHS", "SandboxMiddleware"]

SEARCH_PATHS = frozenset({"/v1/customers/search", "/v1/customers/archive/search"})
_OPEN_PATHS = frozenset({"/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"})
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_LB_HTML = (
    "<html><head><title>{status} {phrase}</title></head><body><center><h1>{status} {phrase}</h1></center>"
    "</body></html>\n"
)
_PHRASES = {502: "Bad Gateway", 503: "Service Temporarily Unavailable"}


def _headers(items: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in items.items()]


async def _send_bytes(
    send: Send, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
) -> None:
    raw = [
        (b"content-type", content_type.encode("latin-1")),
        (b"content-length", str(len(body)).encode("latin-1")),
        *_headers(headers or {}),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _send_json(send: Send, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
    await _send_bytes(send, status, json.dumps(body).encode(), "application/json", headers)


async def _drop(send: Send) -> None:
    """Start a response that promises a body, then abort: the peer sees the connection drop mid-response."""
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"1024")],
        }
    )
    raise DroppedConnection("simulated dropped connection")


class SandboxMiddleware:
    """See the module docstring.

    Args:
        app: the wrapped ASGI app.
        sandbox: the owning sandbox.
    """

    def __init__(self, app: ASGIApp, sandbox: Sandbox) -> None:
        self.app = app
        self.sandbox = sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run one request through the pipeline."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sb = self.sandbox
        request_id = uuid.uuid4().hex
        path: str = scope["path"]
        raw_path = scope.get("raw_path") or b""
        if b"%2f" in raw_path.lower():
            # keep encoded slashes inside a segment (lookup values such as externalId=a%2Fb) out of routing
            protected = raw_path.decode("latin-1").replace("%2F", "%252F").replace("%2f", "%252F")
            path = unquote(protected)
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/") or "/"
            scope = {**scope, "path": path, "raw_path": path.encode()}
        else:
            scope = {**scope, "path": path}
        extra_headers: list[tuple[bytes, bytes]] = [(b"x-request-id", request_id.encode())]
        outcome: dict[str, Any] = {"status": 0, "token": None, "outcome": "ok"}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                outcome["status"] = message["status"]
                message = {**message, "headers": [*message.get("headers", []), *extra_headers]}
            await send(message)

        if path == "/sandbox" or path.startswith("/sandbox/") or path in _OPEN_PATHS:
            await self.app(scope, receive, send_with_headers)
            return
        settings = sb.settings
        method: str = scope["method"]
        decision = sb.faults.decide(settings, method=method, path=path)
        try:
            delay = decision.latency_seconds + decision.slow_seconds
            if delay > 0:
                await asyncio.sleep(delay)
            if decision.pre is not None:
                outcome["outcome"] = f"fault:{decision.pre}"
                sb.state.counters[f"faults.{decision.pre}"] += 1
                await self._pre_fault(decision.pre, send_with_headers, extra_headers)
                return
            if path == "/v1" or path.startswith("/v1/"):
                replay = await self._guard(scope, receive, send_with_headers, extra_headers, outcome)
                if replay is None:
                    return
                receive = replay
            if decision.after_write is not None and method in _WRITE_METHODS:
                await self._with_after_write_fault(scope, receive, send_with_headers, decision.after_write, outcome)
            else:
                await self.app(scope, receive, send_with_headers)
        except DroppedConnection:
            outcome["outcome"] = outcome["outcome"] if outcome["outcome"] != "ok" else "dropped"
            raise
        finally:
            sb.state.counters["requests"] += 1
            sb.state.counters[f"status.{outcome['status']}"] += 1
            sb.state.request_log.append(
                RequestLogEntry(
                    request_id=request_id,
                    method=method,
                    path=path,
                    status=outcome["status"],
                    token_id=outcome["token"],
                    at=sb.clock(),
                    outcome=outcome["outcome"],
                )
            )

    async def _pre_fault(self, kind: str, send: Send, extra_headers: list[tuple[bytes, bytes]]) -> None:
        sb = self.sandbox
        if kind == "drop":
            await _drop(send)
        elif kind == "500":
            await _send_json(send, 500, error_body(500, "Internal server error (injected fault)"))
        elif kind in ("502", "503"):
            status = int(kind)
            html = _LB_HTML.format(status=status, phrase=_PHRASES[status]).encode()
            await _send_bytes(send, status, html, "text/html")
        else:  # burst of 429s
            settings = sb.settings
            now = sb.clock()
            peek = sb.limiter.peek(
                sb.state.org.id,
                "api",
                limit=settings.rate_limit_per_minute,
                window=settings.rate_window_seconds,
                now=now,
            )
            exhausted = Decision(False, peek.limit, 0, peek.reset_at)
            extra_headers.extend(_headers(exhausted.headers(style=settings.ratelimit_reset_style, now=now)))
            await _send_json(send, 429, error_body(429, "Too many requests (rate limit burst)"))

    async def _guard(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        extra_headers: list[tuple[bytes, bytes]],
        outcome: dict[str, Any],
    ) -> Receive | None:
        """Body size, authentication and rate limits; returns a replaying ``receive`` or None if answered."""
        sb = self.sandbox
        settings = sb.settings
        path: str = scope["path"]
        method: str = scope["method"]
        is_hook_post = method == "POST" and path.startswith("/v1/hooks/web/")
        limit = settings.max_hook_body_bytes if is_hook_post else settings.max_body_bytes
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        too_large = SandboxError(413, f"Request body exceeds {limit} bytes", meta={"maxBytes": limit}).response()
        now = sb.clock()
        org = sb.state.org.id
        window = settings.rate_window_seconds

        def peek_headers() -> None:
            if settings.rate_limit_enabled:
                peek = sb.limiter.peek(org, "api", limit=settings.rate_limit_per_minute, window=window, now=now)
                extra_headers.extend(_headers(peek.headers(style=settings.ratelimit_reset_style, now=now)))

        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            outcome["outcome"] = "too_large"
            peek_headers()
            await too_large(scope, receive, send)
            return None
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                outcome["outcome"] = "too_large"
                peek_headers()
                await too_large(scope, receive, send)
                return None
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        try:
            principal = sb.auth.authenticate(headers.get("authorization"))
        except SandboxError as exc:
            outcome["outcome"] = "unauthorized"
            peek_headers()
            await exc.response()(scope, receive, send)
            return None
        outcome["token"] = principal.token_id
        scope.setdefault("state", {})["principal"] = principal
        if settings.rate_limit_enabled:
            decision = self._consume(principal.user_type, path, method, is_hook_post, now)
            extra_headers.extend(_headers(decision.headers(style=settings.ratelimit_reset_style, now=now)))
            if not decision.allowed:
                outcome["outcome"] = "rate_limited"
                sb.state.counters["rate_limited"] += 1
                wait = max(0.0, decision.reset_at - now)
                await SandboxError(
                    429,
                    f"Rate limit of {decision.limit} requests per {window:g}s exceeded for this org; "
                    f"the budget resets in {wait:.3f}s",
                    meta={"limit": decision.limit, "resetAt": decision.reset_at},
                ).response()(scope, receive, send)
                return None
        sent = False

        async def replay() -> MutableMapping[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay

    def _consume(self, user_type: str, path: str, method: str, is_hook_post: bool, now: float) -> Decision:
        sb = self.sandbox
        settings = sb.settings
        org = sb.state.org.id
        window = settings.rate_window_seconds
        if is_hook_post:
            return sb.limiter.consume(org, "hooks", limit=settings.hook_limit_per_minute, window=window, now=now)
        if method == "POST" and path in SEARCH_PATHS and user_type == "machine":
            limit = settings.search_limit_per_minute
            search = sb.limiter.peek(org, "search", limit=limit, window=window, now=now)
            if not search.allowed:
                return search
            api = sb.limiter.consume(org, "api", limit=settings.rate_limit_per_minute, window=window, now=now)
            if not api.allowed:
                return api
            search = sb.limiter.consume(org, "search", limit=limit, window=window, now=now)
            return search if search.remaining <= api.remaining else api
        return sb.limiter.consume(org, "api", limit=settings.rate_limit_per_minute, window=window, now=now)

    async def _with_after_write_fault(
        self, scope: Scope, receive: Receive, send: Send, kind: str, outcome: dict[str, Any]
    ) -> None:
        """Run the route with its response held back; a successful write is answered by the fault."""
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        await self.app(scope, receive, hold)
        status = next((m["status"] for m in held if m["type"] == "http.response.start"), 500)
        if 200 <= status < 300:
            outcome["outcome"] = f"fault:after_write_{kind}"
            self.sandbox.state.counters[f"faults.after_write_{kind}"] += 1
            if kind == "drop":
                await _drop(send)
            html = _LB_HTML.format(status=502, phrase=_PHRASES[502]).encode()
            await _send_bytes(send, 502, html, "text/html")
            return
        for message in held:
            await send(message)
