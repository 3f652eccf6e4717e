"""Benchmark 5: memory while iterating many records (constant memory is the promise of ``iter``).

The sandbox (own process) holds 200,000 customers (quick: 5,000). Each measurement runs in a fresh child
process (``python -m benchmarks.bench_memory --child ...``) so runs never contaminate each other: the child
connects, warms up (one page), runs a full ``gc.collect()``, resets the kernel's peak-RSS mark
(``/proc/self/clear_refs``; where that is refused, the peak of the whole process is used), remembers its
RSS, iterates ``N`` records keeping none of them, and reports ``VmHWM`` (peak RSS) from
``/proc/self/status``.

Cases: ``Resources.iter(page_size=100)``, ``sync.pull(full=True)`` with its default concurrency (when it
exists; not in quick mode), and the raw httpx loop over the same pages (decode only) as the baseline, each
for 20,000 and 200,000 records (quick: 1,000 and 5,000).

Targets (``iter``): peak RSS growth over the iteration of 200k records <= 60 MB, and peak RSS at 200k /
peak RSS at 20k <= 1.15.
"""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from benchmarks._harness import ROOT, Row, at_most, log, row
from benchmarks._sandbox import SandboxProcess

__all__ = ["run"]

NAME = "memory"
GROWTH_TARGET_MB = 60.0
RATIO_TARGET = 1.15
UNLIMITED = 1_000_000_000


def _status() -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` of this process, in bytes."""
    values: dict[str, int] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024
    return values


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


async def _child(cfg: dict[str, Any]) -> dict[str, Any]:
    from benchmarks._connect import connection, raw_client, raw_page

    records, mode = int(cfg["records"]), str(cfg["mode"])
    async with (
        connection(cfg["base_url"], cfg["api_key"], rate_limit=UNLIMITED) as (_hub, conn),
        raw_client(cfg["base_url"], cfg["api_key"]) as client,
    ):
        await conn.resources("genericContact").list(limit=100)  # warm-up: code paths, pools, caches
        await raw_page(client, 1, 100)
        gc.collect()
        reset = _reset_peak()
        before = _status()["VmRSS"]
        started = time.perf_counter()
        count = 0
        if mode == "raw":
            page = 1
            while count < records:
                body = await raw_page(client, page, 100)
                count += len(body["data"])
                if not (body.get("links") or {}).get("next"):
                    break
                page += 1
        else:
            source: AsyncIterator[object]
            if mode == "iter":
                source = conn.resources("genericContact").iter(page_size=100)
            else:
                source = conn.sync("genericContact").pull(full=True, commit=False, resume=False)
            async for _ in source:
                count += 1
                if count >= records:
                    break
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                await aclose()
        seconds = time.perf_counter() - started
        status = _status()
    return {
        "records": count,
        "rss_before": before,
        "peak": status["VmHWM"],
        "rss_after": status["VmRSS"],
        "peak_reset": reset,
        "seconds": seconds,
    }


def _measure(sb: SandboxProcess, mode: str, records: int) -> dict[str, Any]:
    cfg = {"base_url": sb.base_url, "api_key": sb.api_key, "records": records, "mode": mode}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_memory", "--child", json.dumps(cfg)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the {mode} child failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if result["records"] != records:
        raise RuntimeError(f"the {mode} child iterated {result['records']} records, expected {records}")
    return result


def _mb(value: float) -> float:
    return round(value / (1024 * 1024), 1)


def run(quick: bool) -> list[Row]:
    """Run benchmark 5 (see the module docstring)."""
    from benchmarks._connect import pull_available

    small, large = (1_000, 5_000) if quick else (20_000, 200_000)
    modes = ["iter", "raw"] + (["pull"] if pull_available() is None and not quick else [])
    rows: list[Row] = []
    with SandboxProcess(
        customers=large, conversations_per_customer=0, orders_per_customer=0, rate_limit_per_minute=UNLIMITED
    ) as sb:
        log(NAME, f"sandbox with {large:,} customers seeded in {sb.seed_seconds:.1f} s")
        results: dict[tuple[str, int], dict[str, Any]] = {}
        for mode in modes:
            for records in (small, large):
                log(NAME, f"{mode}: {records:,} records")
                results[(mode, records)] = _measure(sb, mode, records)
    for mode in modes:
        title = {"iter": "Resources.iter", "raw": "raw httpx loop (baseline)", "pull": "sync.pull(full)"}[mode]
        low, high = results[(mode, small)], results[(mode, large)]
        growth = high["peak"] - high["rss_before"]
        ratio = high["peak"] / low["peak"]
        judged = mode == "iter"
        rows.append(
            row(
                f"{title}: peak RSS growth over {large:,} records",
                value=_mb(growth),
                unit="MB",
                target=f"<= {GROWTH_TARGET_MB:g} MB" if judged else None,
                met=at_most(_mb(growth), GROWTH_TARGET_MB) if judged else None,
                rss_before_mb=_mb(high["rss_before"]),
                peak_mb=_mb(high["peak"]),
                seconds=round(high["seconds"], 1),
                peak_reset=high["peak_reset"],
            )
        )
        rows.append(
            row(
                f"{title}: peak RSS {large:,} / {small:,} records",
                value=round(ratio, 3),
                unit="x",
                target=f"<= {RATIO_TARGET:g}" if judged else None,
                met=at_most(ratio, RATIO_TARGET) if judged else None,
                peak_small_mb=_mb(low["peak"]),
                peak_large_mb=_mb(high["peak"]),
                growth_small_mb=_mb(low["peak"] - low["rss_before"]),
            )
        )
    return rows


def _main(argv: list[str]) -> None:
    if len(argv) == 2 and argv[0] == "--child":
        print(json.dumps(asyncio.run(_child(json.loads(argv[1])))))
        return
    raise SystemExit("usage: python -m benchmarks.bench_memory --child CONFIG_JSON")


if __name__ == "__main__":
    _main(sys.argv[1:])
