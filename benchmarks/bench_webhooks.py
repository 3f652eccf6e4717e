"""Benchmark: receiving Kustomer webhooks (verify + parse + map + dedupe), with the HMAC-only cost beside it.

``run(quick)`` returns rows ``{name, median_seconds, ratio_vs_baseline, events_per_second, ...}``: the median
seconds per delivery over several repetitions. The baseline is the bare HMAC-SHA256 check of the same
bodies; the other rows go through ``hub.webhooks.handle`` end to end (an in-memory SQLite store, the
in-process sandbox as Kustomer, one subscribed owner): parse the envelope, verify the signature against the
org's stored token, map ``data`` with the contact mapper, claim the event id, check the object version,
and commit. Self-contained: ``python benchmarks/bench_webhooks.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import statistics
import sys
import time
from typing import Any

__all__ = ["run"]

RECEIVE_URL = "https://bench.example.com/webhooks/kustomer"


def _bodies(sandbox: Any, count: int, round_: int) -> list[bytes]:
    """``count`` distinct ``kustomer.customer.update`` deliveries, newer than any of an earlier round."""
    customers = list(sandbox.state.customers.live.values())
    render = sandbox.customer_type.render
    org = sandbox.state.org.id
    out = []
    for i in range(count):
        record = customers[i % len(customers)]
        data = render(record)
        data["attributes"]["rev"] = round_ * 1_000_000 + i  # newer every time: never stale
        envelope = {
            "id": f"bench-{round_}-{i}",
            "name": "kustomer.customer.update",
            "org": org,
            "partition": org,
            "data": data,
            "changes": {"attributes": {"name": {"before": "a", "after": "b"}}},
        }
        out.append(json.dumps(envelope, separators=(",", ":")).encode())
    return out


async def _measure(quick: bool) -> list[dict[str, Any]]:
    from connectors import Connectors, Settings
    from connectors.kustomer.sandbox import Sandbox, SandboxSettings
    from connectors.runtime.secrets import SecretBox
    from connectors.runtime.store import ConnectionStore

    events = 100 if quick else 2000
    repeats = 3 if quick else 5
    sandbox = Sandbox(SandboxSettings(customers=200, companies=5, users=3, teams=1))
    store = ConnectionStore("sqlite:///:memory:", secret_box=SecretBox(os.urandom(32)))
    hub = Connectors(settings=Settings(), store=store, transport=sandbox.transport())
    try:
        conn = await hub.connect("kustomer", "bench", api_key=sandbox.mint_api_key(), base_url=sandbox.base_url)
        await conn.webhooks.subscribe(["genericContact::updated"], url=RECEIVE_URL)
        (webhook,) = sandbox.state.outbound_webhooks
        token = str(webhook.attrs["token"])
        headers_of: dict[bytes, dict[str, str]] = {}

        def headers(body: bytes) -> dict[str, str]:
            signature = hmac.new(token.encode(), body, hashlib.sha256).hexdigest()
            return {
                "content-type": "application/json",
                "x-kustomer-webhook-event": "kustomer.customer.update",
                "x-kustomer-webhook-signature": signature,
            }

        def hmac_only(bodies: list[bytes]) -> float:
            start = time.perf_counter()
            for body in bodies:
                expected = headers_of[body]["x-kustomer-webhook-signature"]
                digest = hmac.new(token.encode(), body, hashlib.sha256).hexdigest()
                if not hmac.compare_digest(digest.encode(), expected.encode()):
                    raise AssertionError("signature mismatch")
            return (time.perf_counter() - start) / len(bodies)

        async def receive(bodies: list[bytes], *, expect_events: bool) -> float:
            start = time.perf_counter()
            for body in bodies:
                result = await hub.webhooks.handle(body, headers_of[body])
                if expect_events and len(result.events) != 1:
                    raise AssertionError(f"expected one event, got {result}")
            return (time.perf_counter() - start) / len(bodies)

        samples: dict[str, list[float]] = {"hmac": [], "plain": [], "handler": [], "duplicate": []}
        handled: list[Any] = []
        for round_ in range(repeats):
            bodies = _bodies(sandbox, events, round_ * 2)
            with_handler = _bodies(sandbox, events, round_ * 2 + 1)
            for body in (*bodies, *with_handler):
                headers_of[body] = headers(body)
            samples["hmac"].append(hmac_only(bodies))
            samples["plain"].append(await receive(bodies, expect_events=True))
            samples["duplicate"].append(await receive(bodies, expect_events=False))
            hub.webhooks.on("genericContact::updated")(handled.append)
            samples["handler"].append(await receive(with_handler, expect_events=True))
            hub.webhooks.off(handled.append)
        assert hub.webhooks.stats["duplicates"] == events * repeats
    finally:
        await hub.aclose()
        store.close()

    baseline = statistics.median(samples["hmac"])
    rows = []
    for key, name in (
        ("hmac", "webhook receive: HMAC-SHA256 verify only (baseline)"),
        ("plain", "webhook receive: verify + parse + map + dedupe + commit"),
        ("handler", "webhook receive: ... + durable dispatch to an in-process handler"),
        ("duplicate", "webhook receive: duplicate delivery (verify + parse + map + dedupe)"),
    ):
        median = statistics.median(samples[key])
        rows.append(
            {
                "name": name,
                "median_seconds": median,
                "events_per_second": 1.0 / median if median else float("inf"),
                "ratio_vs_baseline": median / baseline if baseline else float("nan"),
                "events": events,
                "repeats": repeats,
                "store": "sqlite (in-memory)",
            }
        )
    return rows


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Measure webhook receive throughput.

    Args:
        quick: a small run (100 deliveries x 3) for smoke tests; otherwise 2,000 x 5.

    Returns:
        One row per measurement (median seconds per delivery, deliveries per second, ratio to HMAC-only).
    """
    return asyncio.run(_measure(quick))


if __name__ == "__main__":  # pragma: no cover
    for row in run(quick="--quick" in sys.argv):
        print(
            f"{row['name']:<72} {row['median_seconds'] * 1e6:10.1f} us  {row['events_per_second']:10.0f}/s  "
            f"x{row['ratio_vs_baseline']:.1f}"
        )
