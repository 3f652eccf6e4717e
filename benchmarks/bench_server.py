"""Host app: proxy overhead (p50/p99 through the host app vs straight to the sandbox) and unified list throughput.

Three processes, as in production: the sandbox (``connectors sandbox``, rate limit out of reach), the host app
(``connectors serve`` with ``KUSTOMER_BASE_URL`` pointing at the sandbox, one worker, no access log) and this
client. Direct and proxied requests are interleaved one by one so both see the same machine state.

Rows:

* ``proxy: direct to sandbox`` — ``GET /v1/customers?pageSize=1`` with the API key (the baseline);
* ``proxy: through host app`` — the same through ``GET /proxy/v1/customers`` (operator key + owner header);
  target: p50 ratio <= 1.5;
* ``proxy: through host app, 50 ms upstream latency`` — the same with the sandbox answering after 50 ms, as a
  real Kustomer a network hop away would (the overhead is then a small fraction);
* ``list: direct /v1/customers (50)`` and ``list: GET /resources/genericContact (50)`` — sequential latency
  and requests per second of a 50-record page, raw vs unified (mapping and the Morph envelope included);
* ``list: unified, 8 concurrent`` — requests per second with 8 requests in flight.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks._harness import ROOT, at_most, log, median, percentile, row

__all__ = ["run"]

Row = dict[str, Any]
NAME = "server"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class SandboxServer:
    """``connectors sandbox`` in a subprocess (rate limit out of the way); parses its base URL and API key.

    (Not ``benchmarks._sandbox.SandboxProcess``: its server binds a socket created without ``IPPROTO_TCP``, so
    asyncio leaves Nagle on and every response pays a ~40 ms delayed ACK, which would swamp the baseline.)
    """

    def __init__(self, customers: int) -> None:
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.customers = customers
        self.api_key = ""
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> SandboxServer:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from connectors.cli import main; main()",
                "sandbox",
                "--port",
                str(self.port),
                "--customers",
                str(self.customers),
                "--rate-limit",
                "100000000",
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 120
        for line in self.proc.stdout:
            if "API key (all roles):" in line:
                self.api_key = line.split(":", 1)[1].strip()
                break
            if time.monotonic() > deadline:
                break
        if not self.api_key:
            raise RuntimeError("connectors sandbox did not start")
        # keep reading its output (the access log): a full pipe would block the server
        stdout = self.proc.stdout
        threading.Thread(target=lambda: [None for _ in stdout], name="sandbox-stdout", daemon=True).start()
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.base_url}/sandbox", timeout=2)
                return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("connectors sandbox did not listen")

    def __exit__(self, *exc: object) -> None:
        _stop(self.proc)


def _stop(proc: subprocess.Popen[Any] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


class HostApp:
    """``connectors serve`` in a subprocess against ``base_url``."""

    def __init__(self, base_url: str, home: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.operator_key = secrets.token_urlsafe(32)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("KUSTOMER_", "CONNECTORS_"))},
            "CONNECTORS_HOME": str(home),
            "CONNECTORS_SECRET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "CONNECTORS_OPERATOR_KEY": self.operator_key,
            "CONNECTORS_PUBLIC_URL": self.url,
            "KUSTOMER_BASE_URL": base_url,
            "KUSTOMER_RATE_LIMIT": "1000000",
            "KUSTOMER_SEARCH_LIMIT": "1000000",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> HostApp:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from connectors.cli import main; main()",
                "serve",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            env=self.env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"connectors serve exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("connectors serve did not start")

    def __exit__(self, *exc: object) -> None:
        _stop(self.proc)


def _interleaved(
    direct: httpx.Client, host: httpx.Client, direct_path: str, host_path: str, n: int, warmup: int
) -> tuple[list[float], list[float]]:
    a: list[float] = []
    b: list[float] = []
    for i in range(warmup + n):
        for client, path, out in ((direct, direct_path, a), (host, host_path, b)):
            start = time.perf_counter()
            response = client.get(path)
            elapsed = time.perf_counter() - start
            if response.status_code != 200:
                raise RuntimeError(f"GET {path} answered {response.status_code}: {response.text[:200]}")
            if i >= warmup:
                out.append(elapsed)
    return a, b


async def _concurrent_rps(url: str, path: str, headers: dict[str, str], total: int, concurrency: int) -> float:
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=httpx.Limits(max_connections=concurrency)) as c:
        queue = list(range(total))

        async def worker() -> None:
            while queue:
                queue.pop()
                response = await c.get(path)
                if response.status_code != 200:
                    raise RuntimeError(f"GET {path} answered {response.status_code}")

        for _ in range(concurrency):  # warm the connections
            await c.get(path)
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return total / (time.perf_counter() - start)


def run(quick: bool) -> list[Row]:
    """Measure the host app against the sandbox (see the module docstring)."""
    n = 150 if quick else 1500
    warmup = 20 if quick else 100
    list_n = 60 if quick else 400
    customers = 500 if quick else 3000
    rows: list[Row] = []
    with (
        SandboxServer(customers) as sb,
        tempfile.TemporaryDirectory() as home,
        HostApp(sb.base_url, Path(home)) as app,
    ):
        log(NAME, f"sandbox {sb.base_url} ({customers} customers), host app {app.url}")
        operator = {"Authorization": f"Bearer {app.operator_key}"}
        created = httpx.post(
            f"{app.url}/connections", json={"ownerId": "bench", "apiKey": sb.api_key}, headers=operator, timeout=30
        )
        if created.status_code != 201:
            raise RuntimeError(f"could not connect the host app: {created.status_code} {created.text[:200]}")
        direct_headers = {"Authorization": f"Bearer {sb.api_key}"}
        host_headers = {**operator, "X-Connectors-Owner": "bench"}
        with (
            httpx.Client(base_url=sb.base_url, headers=direct_headers, timeout=30) as direct,
            httpx.Client(base_url=app.url, headers=host_headers, timeout=30) as host,
        ):
            d, p = _interleaved(direct, host, "/v1/customers?pageSize=1", "/proxy/v1/customers?pageSize=1", n, warmup)
            d50, d99, p50, p99 = median(d), percentile(d, 99), median(p), percentile(p, 99)
            ratio = p50 / d50
            rows.append(row("proxy: direct to sandbox", p50=d50, p99=d99, requests=n))
            rows.append(
                row(
                    "proxy: through host app",
                    p50=p50,
                    p99=p99,
                    baseline_seconds=d50,
                    ratio_vs_baseline=ratio,
                    target="p50 ratio <= 1.5",
                    met=at_most(ratio, 1.5),
                    p99_ratio=round(p99 / d99, 2),
                    added_p50_ms=round((p50 - d50) * 1000, 3),
                    requests=n,
                )
            )
            # Kustomer is a network hop away: the same comparison with 50 ms of upstream latency
            httpx.patch(f"{sb.base_url}/sandbox/settings", json={"latency_ms": 50}, timeout=10).raise_for_status()
            lat_n = 40 if quick else 200
            ld50, lp50 = _interleaved(
                direct, host, "/v1/customers?pageSize=1", "/proxy/v1/customers?pageSize=1", lat_n, 5
            )
            lratio = median(lp50) / median(ld50)
            rows.append(
                row(
                    "proxy: through host app, 50 ms upstream latency",
                    p50=median(lp50),
                    p99=percentile(lp50, 99),
                    baseline_seconds=median(ld50),
                    ratio_vs_baseline=lratio,
                    target="p50 ratio <= 1.5",
                    met=at_most(lratio, 1.5),
                    added_p50_ms=round((median(lp50) - median(ld50)) * 1000, 3),
                    requests=lat_n,
                )
            )
            httpx.patch(f"{sb.base_url}/sandbox/settings", json={"latency_ms": 0}, timeout=10).raise_for_status()
            ld, lh = _interleaved(
                direct, host, "/v1/customers?pageSize=50", "/resources/genericContact?limit=50", list_n, warmup // 2
            )
            rows.append(
                row(
                    "list: direct /v1/customers (50)",
                    median_seconds=median(ld),
                    p99=percentile(ld, 99),
                    requests_per_second=round(1 / median(ld), 1),
                )
            )
            rows.append(
                row(
                    "list: GET /resources/genericContact (50)",
                    median_seconds=median(lh),
                    p99=percentile(lh, 99),
                    baseline_seconds=median(ld),
                    ratio_vs_baseline=median(lh) / median(ld),
                    requests_per_second=round(1 / median(lh), 1),
                )
            )
        rps = asyncio.run(
            _concurrent_rps(app.url, "/resources/genericContact?limit=50", host_headers, list_n, concurrency=8)
        )
        rows.append(row("list: unified, 8 concurrent", value=round(rps, 1), unit="requests/s", requests=list_n))
    return rows


if __name__ == "__main__":
    for r in run(quick="--quick" in sys.argv):
        print(r)
