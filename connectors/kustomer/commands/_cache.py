"""Response cache and Cache Fallback Mode state, behind a small async protocol.

Entries are keyed per org + command + resolved URL + request headers + request body (what Kustomer's docs
name for Cache Fallback Mode). The URL, headers and body are folded into a SHA-256 digest, so a key never
holds the secret a header carries in clear text.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

__all__ = ["CacheKey", "CachedResponse", "CommandCache", "FallbackState", "InMemoryCommandCache"]


@dataclass(frozen=True, slots=True)
class CacheKey:
    """Identifies one combination of org, command, URL, headers and body.

    Attributes:
        org_id: the Kustomer org.
        command: the command's full name.
        digest: SHA-256 over the resolved URL, headers (names lower-cased, sorted) and body (canonical JSON).
    """

    org_id: str
    command: str
    digest: str

    @classmethod
    def build(cls, *, org_id: str, command: str, url: str, headers: Mapping[str, str], body: Any) -> CacheKey:
        """Key a resolved request.

        Args:
            org_id: the Kustomer org.
            command: the command's full name.
            url: the resolved URL.
            headers: the resolved request headers.
            body: the resolved JSON body (None when there is none).

        Returns:
            The key.
        """
        canonical = json.dumps(
            {
                "url": url,
                "headers": sorted((name.lower(), value) for name, value in headers.items()),
                "body": body,
            },
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        return cls(org_id=org_id, command=command, digest=hashlib.sha256(canonical.encode()).hexdigest())


@dataclass(frozen=True, slots=True)
class CachedResponse:
    """A successful (status < 400) response as received, before output coercion.

    Attributes:
        status: HTTP status.
        headers: the kept response headers.
        body: decoded JSON body, text, or None.
        stored_at: clock time (epoch seconds) at which it was stored.
    """

    status: int
    headers: Mapping[str, str]
    body: Any
    stored_at: float


@dataclass(frozen=True, slots=True)
class FallbackState:
    """Cache Fallback Mode state of one key.

    Attributes:
        active: whether the mode is on.
        runs: runs counted since activation (a live probe happens when ``runs % 5 == 0``).
        activated_at: clock time of activation.
        last_status: the error status that activated it (None for a transport failure).
    """

    active: bool
    runs: int = 0
    activated_at: float = 0.0
    last_status: int | None = None


@runtime_checkable
class CommandCache(Protocol):
    """Storage of cached responses and fallback state; implementations may be shared between processes."""

    async def get_response(self, key: CacheKey) -> CachedResponse | None:
        """Return the stored response for ``key``, or None."""

    async def set_response(self, key: CacheKey, response: CachedResponse) -> None:
        """Store (replace) the response for ``key``."""

    async def delete_response(self, key: CacheKey) -> None:
        """Forget the response for ``key`` (no error when there is none)."""

    async def count_fallback_run(self, key: CacheKey) -> FallbackState | None:
        """Atomically add one run to an active fallback state and return it; None when the mode is off."""

    async def activate_fallback(self, key: CacheKey, *, at: float, status: int | None) -> FallbackState:
        """Turn the mode on (runs = 0); an already active state is kept with its run count."""

    async def deactivate_fallback(self, key: CacheKey) -> None:
        """Turn the mode off (no error when it is off)."""


@dataclass(slots=True)
class InMemoryCommandCache:
    """Process-local :class:`CommandCache` (each method is atomic: no await between read and write)."""

    _responses: dict[CacheKey, CachedResponse] = field(default_factory=dict, repr=False)
    _fallback: dict[CacheKey, FallbackState] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        active = sum(state.active for state in self._fallback.values())
        return f"InMemoryCommandCache(responses={len(self._responses)}, fallback_active={active})"

    async def get_response(self, key: CacheKey) -> CachedResponse | None:
        """Return the stored response for ``key``, or None."""
        return self._responses.get(key)

    async def set_response(self, key: CacheKey, response: CachedResponse) -> None:
        """Store (replace) the response for ``key``."""
        self._responses[key] = response

    async def delete_response(self, key: CacheKey) -> None:
        """Forget the response for ``key``."""
        self._responses.pop(key, None)

    async def count_fallback_run(self, key: CacheKey) -> FallbackState | None:
        """Add one run to an active fallback state and return it; None when the mode is off."""
        state = self._fallback.get(key)
        if state is None or not state.active:
            return None
        state = self._fallback[key] = replace(state, runs=state.runs + 1)
        return state

    async def activate_fallback(self, key: CacheKey, *, at: float, status: int | None) -> FallbackState:
        """Turn the mode on; an already active state keeps its run count."""
        state = self._fallback.get(key)
        if state is not None and state.active:
            state = self._fallback[key] = replace(state, last_status=status)
            return state
        state = self._fallback[key] = FallbackState(active=True, runs=0, activated_at=at, last_status=status)
        return state

    async def deactivate_fallback(self, key: CacheKey) -> None:
        """Turn the mode off."""
        self._fallback.pop(key, None)

    def fallback_state(self, key: CacheKey) -> FallbackState | None:
        """Inspect the fallback state of ``key`` (tests, diagnostics)."""
        return self._fallback.get(key)
