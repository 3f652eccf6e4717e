"""Latency and fault injection.

Decisions come from random generators seeded from the settings seed (one for faults, one for latency and
jitter), so a given sequence of requests sees the same faults on every run. Each eligible request draws the
same number of values whatever the rates are, so changing one rate does not shift the others' sequence.
Admin routes (``/sandbox/*``) are never faulted; ``fault_paths`` restricts faults to matching paths.

Kinds, in the order they are checked (one uniform draw against cumulative rates):

* ``drop``   — the connection is dropped before the request has any effect.
* ``500``    — JSON 500, before any effect.
* ``502``/``503`` — HTML body as a load balancer would send, before any effect.
* ``burst``  — starts a burst of ``burst_429_length`` consecutive 429s (this request included).

Independently: ``slow`` delays the request by ``slow_response_ms``; ``after_write`` lets a successful write
(POST/PUT/PATCH/DELETE) be APPLIED and then answers 502 or drops the connection (50/50).
"""

from __future__ import annotations

import random
import re
import threading
from dataclasses import dataclass
from typing import Literal

from connectors.kustomer.sandbox.settings import SandboxSettings

__all__ = ["DroppedConnection", "FaultDecision", "FaultInjector"]

PreFault = Literal["drop", "500", "502", "503", "burst"]


class DroppedConnection(Exception):
    """Raised by the app to make the server drop the connection (see ``Sandbox.transport``)."""


@dataclass(frozen=True, slots=True)
class FaultDecision:
    """What happens to one request.

    Attributes:
        pre: a fault answered before the request has any effect, or None.
        slow_seconds: extra delay for a slow response.
        after_write: for writes: ``502`` or ``drop`` after the write is applied, or None.
        latency_seconds: base latency with jitter.
    """

    pre: PreFault | None = None
    slow_seconds: float = 0.0
    after_write: Literal["502", "drop"] | None = None
    latency_seconds: float = 0.0


class FaultInjector:
    """Draws fault decisions from seeded generators.

    Args:
        seed: the settings seed.
    """

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(f"faults:{seed}")
        self._latency_rng = random.Random(f"latency:{seed}")
        self._burst_left = 0
        self._lock = threading.Lock()
        self._pattern: tuple[str | None, re.Pattern[str] | None] = (None, None)

    def _matches(self, settings: SandboxSettings, path: str) -> bool:
        source = settings.fault_paths
        if source is None:
            return True
        if self._pattern[0] != source:
            self._pattern = (source, re.compile(source))
        pattern = self._pattern[1]
        return pattern is not None and pattern.search(path) is not None

    def decide(self, settings: SandboxSettings, *, method: str, path: str) -> FaultDecision:
        """Decide latency and faults for one request."""
        latency = 0.0
        if settings.latency_ms or settings.latency_jitter_ms:
            jitter = self._latency_rng.uniform(-settings.latency_jitter_ms, settings.latency_jitter_ms)
            latency = max(0.0, settings.latency_ms + jitter) / 1000
        if not self._matches(settings, path):
            return FaultDecision(latency_seconds=latency)
        with self._lock:
            draw, slow_draw, write_draw, coin = (self._rng.random() for _ in range(4))
            pre: PreFault | None = None
            if self._burst_left > 0:
                self._burst_left -= 1
                pre = "burst"
            else:
                edge = 0.0
                for kind, rate in (
                    ("drop", settings.drop_connection_rate),
                    ("500", settings.fault_500_rate),
                    ("502", settings.fault_502_rate),
                    ("503", settings.fault_503_rate),
                    ("burst", settings.burst_429_rate),
                ):
                    edge += rate
                    if draw < edge:
                        pre = kind  # type: ignore[assignment]
                        break
                if pre == "burst":
                    self._burst_left = settings.burst_429_length - 1
        slow = settings.slow_response_ms / 1000 if slow_draw < settings.slow_response_rate else 0.0
        after: Literal["502", "drop"] | None = None
        if method not in ("GET", "HEAD", "OPTIONS") and write_draw < settings.fault_after_write_rate:
            after = "502" if coin < 0.5 else "drop"
        return FaultDecision(pre=pre, slow_seconds=slow, after_write=after, latency_seconds=latency)
