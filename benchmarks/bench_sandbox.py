"""The sandbox's own targets: start with 10k seeded customers in < 2 s, serve a 100-item page in < 10 ms.

* **start**: wall time from spawning ``python -m connectors.kustomer.sandbox --customers 10000 --port P``
  (what a user runs; ``connectors sandbox`` is the same with the CLI in front) until the first
  ``GET /v1/customers?pageSize=100`` answers 200: interpreter, imports, seeding 10k customers with their
  conversations, messages and notes, and uvicorn start-up. The in-process import + seeding time
  (``Sandbox(SandboxSettings(customers=10000))`` in a fresh interpreter) is shown beside it (not in quick
  mode).
* **page latency**: sequential ``GET /v1/customers?page=k&pageSize=100`` over loopback HTTP with a
  keep-alive client, median and p99; the baseline is the same request with ``pageSize=1`` (the per-request
  floor of HTTP, routing, auth and rate-limit bookkeeping), interleaved with it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks._harness import ROOT, Row, at_most, log, median, percentile, row

__all__ = ["run"]

NAME = "sandbox"
START_TARGET = 2.0
PAGE_TARGET = 0.010
CUSTOMERS = 10_000


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _key_from(log_path: Path) -> str | None:
    for line in log_path.read_text(errors="replace").splitlines():
        if "API key" in line and ":" in line:
            return line.rsplit(":", 1)[1].strip()
    return None


class _Served:
    """``python -m connectors.kustomer.sandbox`` running on a free port, its stdout in a temp file."""

    def __init__(self, customers: int) -> None:
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._out = tempfile.NamedTemporaryFile(prefix="sandbox-", suffix=".log", delete=False)  # noqa: SIM115
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "connectors.kustomer.sandbox",
                "--customers",
                str(customers),
                "--port",
                str(self.port),
            ],
            cwd=ROOT,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def wait_ready(self, timeout: float = 60.0) -> tuple[float, str]:
        """Poll until the first page answers; return (seconds since spawn, API key)."""
        deadline = self.started + timeout
        key: str | None = None
        with httpx.Client(timeout=2.0) as client:
            while time.perf_counter() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the sandbox exited with {self.proc.returncode}")
                key = key or _key_from(Path(self._out.name))
                if key is not None:
                    try:
                        response = client.get(
                            f"{self.base_url}/v1/customers",
                            params={"pageSize": 100},
                            headers={"Authorization": f"Bearer {key}"},
                        )
                    except httpx.TransportError:
                        response = None
                    if response is not None and response.status_code == 200:
                        return time.perf_counter() - self.started, key
                time.sleep(0.005)
        raise RuntimeError("the sandbox did not serve its first page in time")

    def stop(self) -> None:
        """Stop the server and remove its log."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._out.close()
        Path(self._out.name).unlink(missing_ok=True)


def _seed_seconds(customers: int) -> float:
    code = (
        "import time; t = time.perf_counter(); "
        "from connectors.kustomer.sandbox import Sandbox, SandboxSettings; "
        f"Sandbox(SandboxSettings(customers={customers})); print(time.perf_counter() - t)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def run(quick: bool) -> list[Row]:
    """Run the sandbox benchmark (see the module docstring)."""
    starts = 1 if quick else 5
    requests = 30 if quick else 300
    start_times: list[float] = []
    seed_times = [] if quick else [_seed_seconds(CUSTOMERS) for _ in range(starts)]
    page_times: list[float] = []
    floor_times: list[float] = []
    for attempt in range(starts):
        served = _Served(CUSTOMERS)
        try:
            seconds, key = served.wait_ready()
            start_times.append(seconds)
            log(NAME, f"start {attempt + 1}/{starts}: {seconds:.2f} s")
            if attempt == starts - 1:
                page_times, floor_times = _latencies(served.base_url, key, requests)
        finally:
            served.stop()
    start = median(start_times)
    page = median(page_times)
    floor = median(floor_times)
    return [
        row(
            f"start with {CUSTOMERS:,} customers, spawn to first page",
            median_seconds=start,
            target=f"< {START_TARGET:g} s",
            met=at_most(start, START_TARGET),
            import_and_seed_in_process_seconds=median(seed_times) if seed_times else None,
            runs=starts,
        ),
        row(
            "GET /v1/customers pageSize=100 over loopback",
            median_seconds=page,
            baseline_seconds=floor,
            ratio_vs_baseline=page / floor,
            target=f"< {PAGE_TARGET * 1000:g} ms",
            met=at_most(page, PAGE_TARGET),
            p99_seconds=percentile(page_times, 99),
            requests=len(page_times),
        ),
        row("GET /v1/customers pageSize=1 (baseline)", median_seconds=floor, p99_seconds=percentile(floor_times, 99)),
    ]


def _latencies(base_url: str, key: str, requests: int) -> tuple[list[float], list[float]]:
    pages = CUSTOMERS // 100
    full: list[float] = []
    small: list[float] = []
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=10.0) as client:
        for _ in range(5):  # warm up the connection and the server's code paths
            client.get("/v1/customers", params={"pageSize": 100}).raise_for_status()
        for i in range(requests):
            for size, sink in ((100, full), (1, small)) if i % 2 == 0 else ((1, small), (100, full)):
                started = time.perf_counter()
                response = client.get("/v1/customers", params={"page": i % pages + 1, "pageSize": size})
                response.raise_for_status()
                sink.append(time.perf_counter() - started)
    return full, small
