"""Org-wide request budgets in fixed, clock-aligned windows (kustomer-api.md §4.3).

Buckets per org: ``api`` (every ``/v1`` request; ``rate_limit_per_minute``), ``search`` (search requests by
machine users, on top of ``api``; ``search_limit_per_minute``) and ``hooks`` (inbound web hook posts, instead
of ``api``; ``hook_limit_per_minute``). All tokens of the org share the buckets. Windows are
``[k*w, (k+1)*w)`` on the sandbox clock with ``w = rate_window_seconds``.

Refused (429) requests do NOT consume budget: a fixed window stays exhausted until it resets anyway, and this
keeps ``x-ratelimit-remaining`` meaningful (never negative). Requests refused earlier (401, 413, injected
faults) do not count either; requests that reach the role check do, including 403s.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Literal

__all__ = ["Bucket", "Decision", "RateLimiter"]

Bucket = Literal["api", "search", "hooks"]


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome for one bucket.

    Attributes:
        allowed: the request may proceed.
        limit: requests per window.
        remaining: requests left in this window after this one.
        reset_at: epoch seconds when the window ends.
    """

    allowed: bool
    limit: int
    remaining: int
    reset_at: float

    def headers(self, *, style: Literal["epoch", "delay"], now: float) -> dict[str, str]:
        """``x-ratelimit-*`` headers (``reset`` as epoch seconds or seconds to wait, rounded up)."""
        reset = math.ceil(self.reset_at) if style == "epoch" else max(0, math.ceil(self.reset_at - now))
        return {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(self.remaining),
            "x-ratelimit-reset": str(reset),
        }


class RateLimiter:
    """Fixed-window counters keyed by ``(org, bucket, window)``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], tuple[int, int]] = {}

    def reset(self) -> None:
        """Forget all counts."""
        with self._lock:
            self._counts.clear()

    def _window(self, now: float, window: float) -> tuple[int, float]:
        index = math.floor(now / window)
        return index, (index + 1) * window

    def peek(self, org: str, bucket: Bucket, *, limit: int, window: float, now: float) -> Decision:
        """The bucket's state without consuming."""
        index, reset_at = self._window(now, window)
        with self._lock:
            stored = self._counts.get((org, bucket))
        used = stored[1] if stored is not None and stored[0] == index else 0
        return Decision(used < limit, limit, max(0, limit - used), reset_at)

    def consume(self, org: str, bucket: Bucket, *, limit: int, window: float, now: float) -> Decision:
        """Count one request if the budget allows; otherwise refuse without counting."""
        index, reset_at = self._window(now, window)
        with self._lock:
            stored = self._counts.get((org, bucket))
            used = stored[1] if stored is not None and stored[0] == index else 0
            if used >= limit:
                return Decision(False, limit, 0, reset_at)
            used += 1
            self._counts[(org, bucket)] = (index, used)
        return Decision(True, limit, limit - used, reset_at)
