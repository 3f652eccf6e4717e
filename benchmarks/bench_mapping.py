"""Benchmark 2: mapping one Kustomer customer (JSON bytes) to a unified ``Contact``, per record.

Input: customers exactly as the sandbox's ``GET /v1/customers`` returns them (seeded: emails, phones, company
link, tags, custom attributes of every type), each serialized to its own JSON bytes.

* **baseline**: ``json.loads(raw)``: the physical floor of getting a Python object out of those bytes.
* **decode + map** (target <= 3x): ``connectors.kustomer.to_unified("genericContact", json.loads(raw))``,
  the public pure mapping function (the registry's mapper + extensions, model validation included), i.e.
  Kustomer customer JSON -> unified Contact.
* **map only** (reference): ``to_unified`` of the already-decoded dict.

Times are per record: each sample times a chunk of 100 records and divides by 100; candidate and baseline
samples of the same chunk alternate (their order flipping every round), and the ratio is the median of the
per-sample ratios, so a burst of other load on the machine hits few samples and both sides of them.
"""

from __future__ import annotations

import json
from typing import Any

from benchmarks._harness import Row, at_most, compare, log, median, row, run_coroutine

__all__ = ["run"]

NAME = "mapping"
TARGET = 3.0
CHUNK = 100  # records per timed sample: short samples, many of them, so bursts of other load hit few


async def _customers(count: int) -> list[dict[str, Any]]:
    import httpx

    from connectors.kustomer.sandbox import Sandbox, SandboxSettings

    sandbox = Sandbox(SandboxSettings(customers=count, conversations_per_customer=0, orders_per_customer=0))
    key = sandbox.mint_api_key(name="benchmarks")
    found: list[dict[str, Any]] = []
    async with httpx.AsyncClient(
        transport=sandbox.transport(), base_url=sandbox.base_url, headers={"Authorization": f"Bearer {key}"}
    ) as client:
        page = 1
        while len(found) < count:
            response = await client.get("/v1/customers", params={"page": page, "pageSize": 100})
            response.raise_for_status()
            data = response.json()["data"]
            if not data:
                break
            found.extend(data)
            page += 1
    return found[:count]


def run(quick: bool) -> list[Row]:
    """Run benchmark 2 (see the module docstring)."""
    from connectors.kustomer import to_unified

    count = 300 if quick else 2_000
    repeats = 3 if quick else 11
    customers = run_coroutine(lambda: _customers(count))
    blobs = [json.dumps(c).encode() for c in customers]
    decoded = [json.loads(b) for b in blobs]
    log(NAME, f"{len(blobs):,} customers, {sum(map(len, blobs)) / len(blobs):,.0f} bytes each on average")
    # every record must map: a benchmark of a mapping that fails would measure the error path
    for item in decoded:
        to_unified("genericContact", item)

    chunks = [range(i, min(i + CHUNK, len(blobs))) for i in range(0, len(blobs), CHUNK)]
    samples: dict[str, list[float]] = {"loads": [], "full": [], "map": [], "loads2": []}
    ratios: dict[str, list[float]] = {"full": [], "map": []}
    for chunk in chunks:
        part = [blobs[i] for i in chunk]
        dicts = [decoded[i] for i in chunk]

        def baseline(part: list[bytes] = part) -> None:
            for raw in part:
                json.loads(raw)

        def decode_and_map(part: list[bytes] = part) -> None:
            for raw in part:
                to_unified("genericContact", json.loads(raw))

        def map_only(dicts: list[dict[str, Any]] = dicts) -> None:
            for item in dicts:
                to_unified("genericContact", item)

        n = len(part)
        full = compare(decode_and_map, baseline, repeats=repeats)
        mapped = compare(map_only, baseline, repeats=repeats)
        samples["full"] += [t / n for t in full.candidate]
        samples["loads"] += [t / n for t in full.baseline]
        samples["map"] += [t / n for t in mapped.candidate]
        samples["loads2"] += [t / n for t in mapped.baseline]
        ratios["full"] += [c / b for c, b in zip(full.candidate, full.baseline, strict=True)]
        ratios["map"] += [c / b for c, b in zip(mapped.candidate, mapped.baseline, strict=True)]
    base = median(samples["loads"])
    full_ratio = median(ratios["full"])
    return [
        row("json.loads per record (baseline)", median_seconds=base, records=len(blobs), samples=len(ratios["full"])),
        row(
            "decode + map to Contact per record",
            median_seconds=median(samples["full"]),
            baseline_seconds=base,
            ratio_vs_baseline=full_ratio,
            target=f"ratio <= {TARGET:g}",
            met=at_most(full_ratio, TARGET),
            records_per_second=1 / median(samples["full"]),
        ),
        row(
            "map only (decoded dict -> Contact) per record (reference)",
            median_seconds=median(samples["map"]),
            baseline_seconds=median(samples["loads2"]),
            ratio_vs_baseline=median(ratios["map"]),
        ),
    ]
