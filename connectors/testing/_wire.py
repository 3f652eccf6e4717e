"""The wire log: every request a connector sends during a contract test, and cassette mismatches.

:class:`WireLog` is an ``httpx`` transport placed under the connector's whole stack (auth, retries, rate
budget), right above the real transport. It records what is actually sent, so tests can assert that a call
sent *nothing* (a permission check that must fail before any request) or exactly what they expect. On the
cassette backend, vcrpy refuses a request its cassette does not hold; the wire log turns that refusal into a
:class:`CassetteMismatch` that says the wire contract changed and how to re-record.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import httpx

__all__ = ["CassetteMismatch", "WireLog", "WireRequest"]


class CassetteMismatch(AssertionError):
    """The connector sent a request that the cassette does not hold: the wire contract changed.

    Raised on the cassette backend in replay. It is an ``AssertionError`` (a test failure, not a runtime error
    of the package): either the change is a regression, or it is intended and the cassettes must be
    re-recorded.

    Attributes:
        method: method of the unexpected request.
        path: its path.
        details: vcrpy's explanation (closest recorded requests and how they differ).
    """

    def __init__(self, method: str, path: str, details: str, *, hint: str = "") -> None:
        message = (
            f"wire contract changed: the connector sent {method} {path}, which the cassette does not hold "
            f"(requests are matched on method, path, query and body).\n{details}"
        )
        if hint:
            message += f"\n\nIf the change is intended, re-record the cassettes:\n  {hint}"
        super().__init__(message)
        self.method = method
        self.path = path
        self.details = details


@dataclass(frozen=True, slots=True)
class WireRequest:
    """One request as the connector sent it.

    Attributes:
        method: HTTP method.
        path: URL path (percent-encoded as sent).
        query: query parameters in order.
        body: the decoded JSON body, the raw text of another body, or ``None``.
    """

    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    body: Any = None

    def __str__(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in self.query)
        return f"{self.method} {self.path}{'?' + query if query else ''}"


class WireLog(httpx.AsyncBaseTransport):
    """Record every request sent through ``inner`` (default: a real ``httpx.AsyncHTTPTransport``).

    Args:
        inner: the transport that actually sends (the sandbox's in-process transport, or real HTTP which vcrpy
            intercepts on the cassette backend).
        rerecord_hint: the command that re-records the cassettes, quoted in :class:`CassetteMismatch`.

    Attributes:
        requests: every request sent, in order.
        mismatches: cassette refusals not yet acknowledged with :meth:`expect_mismatch`.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport | None = None, *, rerecord_hint: str = "") -> None:
        self.inner: httpx.AsyncBaseTransport = inner if inner is not None else httpx.AsyncHTTPTransport()
        self.rerecord_hint = rerecord_hint
        self.requests: list[WireRequest] = []
        self.mismatches: list[CassetteMismatch] = []

    def __repr__(self) -> str:
        return f"WireLog(requests={len(self.requests)}, mismatches={len(self.mismatches)})"

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Log ``request``, then send it through the inner transport."""
        await request.aread()
        self.requests.append(_describe(request))
        try:
            return await self.inner.handle_async_request(request)
        except Exception as exc:
            if not _is_vcr_refusal(exc):
                raise
            mismatch = CassetteMismatch(request.method, request.url.path, str(exc), hint=self.rerecord_hint)
            self.mismatches.append(mismatch)
            raise mismatch from None

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self.inner.aclose()

    def mark(self) -> int:
        """A position in the log, for :meth:`since`."""
        return len(self.requests)

    def since(self, mark: int) -> list[WireRequest]:
        """The requests sent after ``mark``."""
        return self.requests[mark:]

    @contextmanager
    def expect_mismatch(self) -> Iterator[list[CassetteMismatch]]:
        """Expect the block to send a request the cassette refuses; acknowledge that refusal.

        Yields:
            A list that holds the mismatch once the block has raised it.

        Raises:
            AssertionError: the block sent nothing the cassette refuses.
        """
        caught: list[CassetteMismatch] = []
        before = len(self.mismatches)
        try:
            yield caught
        except CassetteMismatch as exc:
            caught.append(exc)
        if len(self.mismatches) == before and not caught:
            raise AssertionError("expected the cassette to refuse a request, but every request matched")
        caught.extend(m for m in self.mismatches[before:] if m not in caught)
        del self.mismatches[before:]


def _is_vcr_refusal(exc: Exception) -> bool:
    try:
        from vcr.errors import CannotOverwriteExistingCassetteException
    except ImportError:  # pragma: no cover - vcrpy is a dependency of the testing extra
        return False
    return isinstance(exc, CannotOverwriteExistingCassetteException)


def _describe(request: httpx.Request) -> WireRequest:
    raw = request.content
    body: Any = None
    if raw:
        text = raw.decode("utf-8", errors="replace")
        try:
            body = json.loads(text)
        except ValueError:
            body = text
    query = tuple(parse_qsl(request.url.query.decode("ascii", errors="replace"), keep_blank_values=True))
    return WireRequest(request.method, request.url.raw_path.split(b"?", 1)[0].decode("ascii"), query, body)
