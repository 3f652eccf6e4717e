"""Request body size limit (a pure ASGI middleware): larger bodies get ``413 payload_too_large``.

A declared ``Content-Length`` above the limit is refused before anything is read. A chunked body is counted
while the route reads it; the moment it passes the limit, reading fails with an :class:`HTTPProblem` (413),
so no route ever sees a truncated body.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from connectors.server.errors import HTTPProblem

__all__ = ["BodySizeLimitMiddleware"]


def _too_large(limit: int) -> HTTPProblem:
    return HTTPProblem(
        413,
        "payload_too_large",
        f"the request body exceeds the limit of {limit} bytes",
        extra={"maxBytes": limit},
    )


class BodySizeLimitMiddleware:
    """Refuse request bodies larger than ``max_bytes``.

    Args:
        app: the wrapped ASGI app.
        max_bytes: the limit.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Apply the limit to one HTTP request."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                declared = value.decode("latin-1").strip()
                if not declared.isdigit():
                    await _send_problem(send, HTTPProblem(400, "bad_request", "invalid Content-Length header"))
                    return
                if int(declared) > limit:
                    await _send_problem(send, _too_large(limit))
                    return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _too_large(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except HTTPProblem as problem:
            if started or problem.status != 413:
                raise
            await _send_problem(send, problem)


async def _send_problem(send: Send, problem: HTTPProblem) -> None:
    body = json.dumps({"error": problem.to_dict()}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("latin-1")),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": problem.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
