"""In-process httpx transport onto the sandbox app."""

from __future__ import annotations

import httpx
from starlette.types import ASGIApp

from connectors.kustomer.sandbox.faults import DroppedConnection

__all__ = ["SandboxTransport"]


class SandboxTransport(httpx.AsyncBaseTransport):
    """``httpx.ASGITransport`` that reports a simulated dropped connection as real HTTP would.

    A dropped connection becomes ``httpx.RemoteProtocolError``, which is what httpx raises when a server
    closes the connection mid-response.

    Args:
        app: the sandbox ASGI app.
    """

    def __init__(self, app: ASGIApp) -> None:
        self._inner = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send one request through the app."""
        try:
            return await self._inner.handle_async_request(request)
        except DroppedConnection as exc:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a complete response.", request=request
            ) from exc

    async def aclose(self) -> None:
        """Close the inner transport (a no-op for ASGI)."""
        await self._inner.aclose()
