"""A push killed with SIGKILL mid-way, then run again: same final state, no duplicates.

The sandbox is served over real HTTP (uvicorn on loopback) and the store is a SQLite file shared by the
killed process and the rerun, as in a deployment. Bulk jobs are slowed down so that the kill lands while
jobs are submitted but unfinished: the rerun must wait for them and match what they created.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from connectors import Connectors, Settings
from connectors.kustomer.sandbox import Sandbox, running_sandbox
from connectors.runtime.bulk import PushOptions, PushReport
from connectors.runtime.secrets import SecretBox
from connectors.runtime.store import ConnectionStore

from .conftest import BIG_BUDGET, contact_rows, customers_with_email, sandbox_settings

pytestmark = [pytest.mark.http, pytest.mark.slow]

WORKER = Path(__file__).with_name("push_worker.py")
ROWS = 400
INVALID = {17: "local", 123: "server", 250: "local", 311: "server"}


def _rows() -> list[dict[str, Any]]:
    rows = contact_rows(ROWS, prefix="crash")
    for index, kind in INVALID.items():
        if kind == "local":
            rows[index]["customFields"] = {"tier": "no suffix"}
        else:
            rows[index]["phone"] = "0000"  # refused by Kustomer only: split retries
    return rows


def _wait_for_unfinished_jobs(
    sb: Sandbox, proc: subprocess.Popen[str], log: Path, *, minimum: int, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = list(sb.state.bulk_jobs.values())
        if len(jobs) >= minimum and any(job.status != "complete" for job in jobs):
            return
        if proc.poll() is not None:
            pytest.fail(f"the worker ended before it could be killed:\n{log.read_text()}")
        time.sleep(0.005)
    pytest.fail("the worker never had unfinished bulk jobs")


def test_killed_push_then_rerun_lands_every_row_exactly_once(tmp_path: Path) -> None:
    key = os.urandom(32)
    db = tmp_path / "connectors.db"
    rows = _rows()
    rows_file = tmp_path / "rows.jsonl"
    rows_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    settings = sandbox_settings(bulk_processing_seconds=0.15)
    with running_sandbox(settings) as (sb, base_url):
        store = ConnectionStore(f"sqlite:///{db}", secret_box=SecretBox(key))

        async def connect() -> None:
            async with Connectors(settings=Settings(kustomer=BIG_BUDGET), store=store) as hub:
                await hub.connect("kustomer", "tenant-crash", api_key=sb.mint_api_key(), base_url=base_url)

        asyncio.run(connect())
        env = {**os.environ, "CONNECTORS_SECRET_KEY": base64.urlsafe_b64encode(key).decode()}
        log = tmp_path / "worker.log"
        with log.open("w") as output:
            proc = subprocess.Popen(
                [sys.executable, str(WORKER), str(db), str(rows_file), "tenant-crash"],
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                text=True,
            )
            try:
                _wait_for_unfinished_jobs(sb, proc, log, minimum=3, timeout=60)
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        assert proc.returncode == -signal.SIGKILL, log.read_text()
        assert "finished" not in log.read_text()
        jobs_at_kill = len(sb.state.bulk_jobs)

        (record,) = store.list(owner_id="tenant-crash")
        ledger = store.get_watermark(f"{record.id}:genericContact:bulk-jobs")
        assert ledger is not None and ledger["jobs"], "the kill should leave recorded, unfinished jobs"
        stored = json.dumps(ledger)
        assert "@example.com" not in stored  # match keys are kept as keyed hashes only

        async def rerun() -> PushReport:
            async with Connectors(settings=Settings(kustomer=BIG_BUDGET), store=store) as hub:
                conn = await hub.get("kustomer", "tenant-crash")
                options = PushOptions(batch_size=40, poll_interval=0.01, poll_max_interval=0.05, ambiguous_delay=0.5)
                return await conn.sync("genericContact").push(rows, match="email", options=options)

        report = asyncio.run(rerun())
        store.close()

        assert report.recovered_jobs >= 1
        assert len(sb.state.bulk_jobs) > jobs_at_kill
        assert report.rows == ROWS
        assert report.created + report.updated + report.skipped == ROWS - len(INVALID)
        assert {r.index for r in report.rejected_rows()} == set(INVALID)
        for index, row in enumerate(rows):
            found = customers_with_email(sb, row["email"])
            if index in INVALID:
                assert found == [], index
                continue
            assert len(found) == 1, (index, found)
            customer = sb.state.customers.get(found[0])
            assert customer is not None
            assert customer.attrs["name"] == f"{row['firstName']} {row['lastName']}"
            assert customer.attrs["custom"] == row["customFields"]
