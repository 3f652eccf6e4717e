"""Benchmark 1: full export of the sandbox's contacts through the connector vs a minimal raw httpx loop.

Setup: a sandbox in its own process (see :mod:`benchmarks._sandbox`) seeded with ``N`` customers (50,000;
quick: 2,000), rate limits out of the way (this measures overhead, not pacing), no added latency.

Cases, run round-robin in the same run against the same server (rotating which goes first):

* **raw** (baseline): ``httpx.AsyncClient`` GET ``/v1/customers?page=p&pageSize=100&sort=createdAt`` +
  ``response.json()``, following ``links.next``: the same pages the connector's plain-list export asks for,
  decoded, not mapped.
* **iter**: ``conn.resources("genericContact").iter(page_size=100)``: auth, rate limiter, retries transport,
  typed errors, signed cursors and mapping every customer to a validated ``Contact``.
* **pull c=1** (when ``conn.sync(model).pull`` exists): the sync engine's full export, sequential (its
  concurrent export is benchmark 4's subject, and ``bench_bulk`` compares it with the raw loop too).

Target: connector time / raw time <= 1.15 for the sequential cases: the median of the per-round ratios
(wall time, as the issue says; the
``client_cpu_ratio`` detail is the same ratio of the client process's CPU time, which other load on the
machine moves much less). A last row (not in quick mode) repeats iter vs raw on a smaller set with 50 ms
of sandbox latency, to show how the ratio behaves when the network, not the client CPU, dominates (as with
the real Kustomer).
"""

from __future__ import annotations

from typing import Any

from benchmarks._connect import (
    connection,
    iter_export,
    pull_available,
    pull_export,
    raw_client,
    raw_export,
    raw_page,
)
from benchmarks._harness import Row, at_most, interleave_async, log, median, paired_ratio, row, run_coroutine
from benchmarks._sandbox import SandboxProcess

__all__ = ["run"]

NAME = "export"
TARGET = 1.15
PAGE_SIZE = 100
UNLIMITED = 1_000_000_000  # requests per window: the budget is not what this benchmark measures


def _sandbox(customers: int) -> SandboxProcess:
    return SandboxProcess(
        customers=customers,
        conversations_per_customer=0,
        orders_per_customer=0,
        rate_limit_per_minute=UNLIMITED,
    )


async def _measure(
    base_url: str, api_key: str, records: int, repeats: int, *, with_pull: bool, cpu: dict[str, list[float]]
) -> dict[str, list[float]]:
    async with (
        connection(base_url, api_key, rate_limit=UNLIMITED) as (_hub, conn),
        raw_client(base_url, api_key) as client,
    ):

        async def raw() -> None:
            _check("raw", await raw_export(client, PAGE_SIZE), records)

        async def iterate() -> None:
            _check("iter", await iter_export(conn, PAGE_SIZE), records)

        cases: dict[str, Any] = {"raw": raw, "iter": iterate}
        if with_pull:

            async def pull1() -> None:
                _check("pull c=1", await pull_export(conn, concurrency=1, page_size=PAGE_SIZE), records)

            cases["pull c=1"] = pull1
        # warm-up: connection pools, the server's and the client's code paths (a page each, not a full export)
        await conn.resources("genericContact").list(limit=PAGE_SIZE)
        await raw_page(client, 1, PAGE_SIZE)
        return await interleave_async(cases, repeats=repeats, warmup=0, cpu=cpu)


def _check(case: str, got: int, expected: int) -> None:
    if got != expected:
        raise RuntimeError(f"{case} exported {got} records, expected {expected}")


def run(quick: bool) -> list[Row]:
    """Run benchmark 1 (see the module docstring)."""
    records = 2_000 if quick else 50_000
    repeats = 2 if quick else 5
    latency_records, latency_repeats = 5_000, 3
    unavailable = pull_available()
    rows: list[Row] = []
    cpu: dict[str, list[float]] = {}
    with _sandbox(records) as sb:
        log(NAME, f"sandbox with {records:,} customers seeded in {sb.seed_seconds:.1f} s at {sb.base_url}")
        times = run_coroutine(
            lambda: _measure(sb.base_url, sb.api_key, records, repeats, with_pull=unavailable is None, cpu=cpu)
        )
    base, base_cpu = median(times["raw"]), median(cpu["raw"])
    rows.append(
        row(
            f"raw httpx loop, {records:,} records",
            median_seconds=base,
            records_per_second=records / base,
            client_cpu_seconds=base_cpu,
            pages=records // PAGE_SIZE,
            repeats=repeats,
        )
    )
    for case, title in (("iter", "Resources.iter"), ("pull c=1", "sync.pull(full, concurrency=1)")):
        if case not in times:
            continue
        value = median(times[case])
        ratio = paired_ratio(times[case], times["raw"])
        rows.append(
            row(
                f"{title}, {records:,} records",
                median_seconds=value,
                baseline_seconds=base,
                ratio_vs_baseline=ratio,
                target=f"ratio <= {TARGET}",
                met=at_most(ratio, TARGET),
                records_per_second=records / value,
                client_cpu_ratio=paired_ratio(cpu[case], cpu["raw"]),
            )
        )
    if unavailable is not None:
        rows.append(row("sync.pull(full=True)", status=f"not available yet: {unavailable}"))
    if quick:
        return rows
    with _sandbox(latency_records) as sb:
        sb.patch_settings(latency_ms=50)
        log(NAME, f"iter vs raw with 50 ms latency, {latency_records:,} records")
        cpu = {}
        times = run_coroutine(
            lambda: _measure(sb.base_url, sb.api_key, latency_records, latency_repeats, with_pull=False, cpu=cpu)
        )
    base, value = median(times["raw"]), median(times["iter"])
    rows.append(
        row(
            f"Resources.iter at 50 ms latency, {latency_records:,} records (reference)",
            median_seconds=value,
            baseline_seconds=base,
            ratio_vs_baseline=paired_ratio(times["iter"], times["raw"]),
            records_per_second=latency_records / value,
            client_cpu_ratio=paired_ratio(cpu["iter"], cpu["raw"]),
        )
    )
    return rows
