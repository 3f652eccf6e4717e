"""A Kustomer sandbox in its own process, for benchmarks over loopback HTTP.

Why a separate process: with ``running_sandbox`` (uvicorn in a thread) the client under test and the server
share one GIL, so a throughput benchmark would measure their contention rather than the client. In its own
process the server runs on the other core, as a real Kustomer would be elsewhere; connector and baseline
are always compared against the same server in the same run.

::

    with SandboxProcess(customers=50_000, conversations_per_customer=0) as sb:
        sb.patch_settings(latency_ms=50)
        httpx.get(f"{sb.base_url}/v1/customers", headers={"Authorization": f"Bearer {sb.api_key}"})
        sb.counters()["status.429"]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import IO, Any, Self

import httpx

from benchmarks._harness import ROOT

__all__ = ["SandboxProcess"]


class SandboxProcess:
    """Start ``python -m benchmarks._sandbox_server`` and talk to its admin API.

    Args:
        startup_timeout: seconds to wait for seeding and the ready line.
        **settings: :class:`~connectors.kustomer.sandbox.SandboxSettings` fields (``customers=...``).
    """

    def __init__(self, *, startup_timeout: float = 180.0, **settings: Any) -> None:
        self.settings = dict(settings)
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[str] | None = None
        self.base_url = ""
        self.api_key = ""
        self.org_id = ""
        self.seed_seconds = 0.0

    def __repr__(self) -> str:
        return f"SandboxProcess(base_url={self.base_url!r}, settings={self.settings!r})"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> Self:
        """Start the server and wait until it listens.

        Raises:
            RuntimeError: it exited or did not get ready in time.
        """
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._sandbox_server", json.dumps(self.settings)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = _read_line(self._proc.stdout, self.startup_timeout)
        if not line:
            self.stop()
            raise RuntimeError("the sandbox server did not start (see its stderr above)")
        ready = json.loads(line)
        self.base_url = ready["base_url"]
        self.api_key = ready["api_key"]
        self.org_id = ready["org_id"]
        self.seed_seconds = float(ready["seed_seconds"])
        return self

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()

    @property
    def pid(self) -> int:
        """The server's process id."""
        if self._proc is None:
            raise RuntimeError("the sandbox server is not running")
        return self._proc.pid

    def _admin(self, method: str, path: str, body: Any = None) -> Any:
        response = httpx.request(method, f"{self.base_url}{path}", json=body, timeout=30.0)
        response.raise_for_status()
        return response.json() if response.content else None

    def patch_settings(self, **changes: Any) -> dict[str, Any]:
        """Change runtime settings (latency, limits, faults) through ``PATCH /sandbox/settings``."""
        result: dict[str, Any] = self._admin("PATCH", "/sandbox/settings", changes)
        return result

    def counters(self) -> dict[str, int]:
        """The request counters (``requests``, ``status.200``, ``status.429``, ``rate_limited``...)."""
        return {str(k): int(v) for k, v in self._admin("GET", "/sandbox/requests")["counters"].items()}

    def mint_key(self, roles: Sequence[str] | None = None, name: str = "benchmarks") -> str:
        """A new API key (all roles by default)."""
        body: Mapping[str, Any] = {"name": name} if roles is None else {"name": name, "roles": list(roles)}
        token: str = self._admin("POST", "/sandbox/keys", body)["token"]
        return token


def _read_line(stream: IO[str] | None, timeout: float) -> str:
    """Read one line from ``stream`` within ``timeout`` seconds ('' on timeout or EOF)."""
    if stream is None:
        return ""
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    reader.join(max(0.0, deadline - time.monotonic()))
    return box[0].strip() if box else ""
