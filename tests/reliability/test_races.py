"""Races: OAuth token refresh from several processes (SQLite and PostgreSQL) and from many tasks of two hubs.

The sandbox rotates refresh tokens and, when a rotated one is presented again, revokes the whole token family
(every access and refresh token of the grant) -- so a single refresh done twice would make calls fail. The
library refreshes under the store's row lock, re-reads after taking it and compares-and-swaps on the token
version: zero failed calls, zero reused refresh tokens, one stored version per refresh. A token family that
*is* revoked (a leaked refresh token replayed elsewhere) moves the connection to ``needs_reauth`` with an auth
event and a typed error, never a crash.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from _reliability import CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, Tally, consent, quiet_settings

from connectors import Connection, Connectors, Settings
from connectors.errors import NeedsReauthError
from connectors.kustomer.sandbox import Sandbox, running_sandbox
from connectors.runtime.auth import AuthEvent
from connectors.runtime.secrets import SecretBox
from connectors.runtime.store import ConnectionStore

pytestmark = [pytest.mark.reliability, pytest.mark.anyio]

KUSTOMER = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
TTL = 1  # seconds: the sandbox's shortest access-token lifetime
MARGIN = 0.25
DURATION = 3.0
PROCESSES = 3
CONCURRENCY = 3


@dataclass
class FakeClock:
    """Epoch seconds that move only when told to (shared by a sandbox and hubs)."""

    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


async def _oauth_connection(hub: Connectors, base_url: str, owner: str, transport: Any = None) -> Connection:
    request = await hub.authorize(
        "kustomer", owner, operations=["genericUser::list"], redirect_uri=REDIRECT_URI, base_url=base_url
    )
    assert request.url is not None
    redirect = await consent(request.url, transport=transport)
    return await hub.complete_authorization(code=redirect["code"], state=redirect["state"])


def _spawn(spec: dict[str, Any], n: int) -> list[dict[str, Any]]:
    import _reliability_workers

    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(n)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_reliability_workers.hammer, args=(spec, barrier, results), daemon=True) for _ in range(n)
    ]
    for proc in procs:
        proc.start()
    try:
        reports = [results.get(timeout=120) for _ in procs]
        for proc in procs:
            proc.join(30)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
    crashes = [r["crash"] for r in reports if "crash" in r]
    assert not crashes, crashes[0]
    assert all(proc.exitcode == 0 for proc in procs)
    return reports


@pytest.mark.http
@pytest.mark.slow
@pytest.mark.parametrize("database", ["sqlite", "postgres"])
async def test_refresh_race_across_processes_then_reuse_revocation(
    database: str, tmp_path: Path, request: pytest.FixtureRequest, tally: Tally
) -> None:
    db_url = f"sqlite:///{tmp_path / 'race.db'}" if database == "sqlite" else request.getfixturevalue("postgres_url")
    key = os.urandom(32)
    owner = f"race-{database}-{random.randrange(10**9)}"
    events: list[AuthEvent] = []
    settings = quiet_settings(customers=2, users=2, oauth_access_token_ttl_seconds=TTL, rate_limit_enabled=False)
    with running_sandbox(settings) as (sb, base_url):
        sb.register_oauth_client(CLIENT_ID, CLIENT_SECRET, [REDIRECT_URI])
        store = ConnectionStore(db_url, secret_box=SecretBox(key))
        try:
            async with Connectors(settings=Settings(kustomer=KUSTOMER), store=store) as hub:
                conn = await _oauth_connection(hub, base_url, owner)
            first = store.get_by_id(conn.id)
            assert first is not None and first.secrets.refresh_token
            leaked = first.secrets.refresh_token  # the consent's refresh token: rotated by the first refresh
            spec = {
                "db_url": db_url,
                "key": key,
                "owner": owner,
                "refresh_margin": MARGIN,
                "kustomer": KUSTOMER,
                "duration": DURATION,
                "concurrency": CONCURRENCY,
                "pause": 0.005,
            }
            reports = _spawn(spec, PROCESSES)
            raced = store.get_by_id(conn.id)
            counters = dict(sb.state.counters)

            # Reuse revocation: the old refresh token replayed (say, from a leaked backup) revokes the family.
            async with httpx.AsyncClient() as client:
                replay = await client.post(
                    f"{base_url}/oauth/token",
                    data={
                        "grant_type": "refresh_token",
                        "refresh_token": leaked,
                        "client_id": CLIENT_ID,
                        "client_secret": CLIENT_SECRET,
                    },
                )
            async with Connectors(settings=Settings(kustomer=KUSTOMER), store=store) as hub:
                hub.on_auth_event(events.append)
                conn = await hub.get("kustomer", owner)
                with pytest.raises(NeedsReauthError) as caught:
                    await conn.resources("genericUser").list(limit=1)
            final = store.get_by_id(conn.id)
        finally:
            store.close()

    start = min(r["started"] for r in reports)
    end = max(r["finished"] for r in reports)
    calls = sum(r["ok"] for r in reports)
    failed = sum(r["failed"] for r in reports)
    refreshes = counters.get("oauth.refresh", 0)
    reuse = counters.get("oauth.refresh_reuse", 0)
    versions_lost = abs((raced.token_version if raced else 0) - (1 + refreshes))
    tally.races += PROCESSES * CONCURRENCY
    lost = failed + reuse + versions_lost
    tally.record(f"refresh race ({database})", tried=calls + failed, rejected=failed, lost=lost)
    tally.note(
        f"refresh race on {database}: {PROCESSES} processes x {CONCURRENCY} tasks, {calls} calls in "
        f"{end - start:.1f}s, {refreshes} refreshes of {TTL}s tokens, {reuse} refresh-token reuses, {failed} failed "
        f"calls; replayed old refresh token -> {replay.status_code} {replay.json().get('error')}, connection "
        f"{final.status if final else None}"
    )
    assert [r["failures"] for r in reports] == [[]] * PROCESSES
    assert all(r["ok"] > 10 for r in reports)
    assert reuse == 0
    assert sum(r["refreshes"] for r in reports) == refreshes  # every refresh made by exactly one process
    assert refreshes >= math.floor((end - start) / TTL)
    assert raced is not None and raced.status == "active" and versions_lost == 0
    # the replay: refused, the family revoked, the connection needs re-auth (typed error + event), no crash
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert sb.state.counters["oauth.refresh_reuse"] == 1
    assert "needs re-authorization" in str(caught.value)
    assert final is not None and final.status == "needs_reauth"
    assert [e.kind for e in events] == ["needs_reauth"]
    for secret in (leaked, CLIENT_SECRET):
        assert secret not in str(caught.value) and secret not in repr(final)


async def test_refresh_race_between_two_hubs_and_many_tasks_refreshes_once(
    tmp_path: Path, make_store: Callable[..., ConnectionStore], tally: Tally
) -> None:
    """Two hubs (two workers of one deployment) share a SQLite file; 2 x 25 tasks find the token expired at once."""
    clock = FakeClock()
    sb = Sandbox(quiet_settings(users=2, oauth_access_token_ttl_seconds=600), clock=clock)
    sb.register_oauth_client(CLIENT_ID, CLIENT_SECRET, [REDIRECT_URI])
    key = os.urandom(32)
    url = f"sqlite:///{tmp_path / 'two-hubs.db'}"
    settings = Settings(refresh_margin=60, kustomer=KUSTOMER)
    hubs = [
        Connectors(settings=settings, store=make_store(url, key), transport=sb.transport(), clock=clock)
        for _ in range(2)
    ]
    try:
        conn = await _oauth_connection(hubs[0], sb.base_url, "tenant-two-hubs", transport=sb.transport())
        before = sb.state.counters["oauth.refresh"]
        for round_ in range(3):
            clock.now += 600  # every token in every hub expired
            conns = [await hub.get_by_id(conn.id) for hub in hubs]
            failures: list[BaseException] = []

            async def call(c: Connection, failures: list[BaseException] = failures) -> None:
                try:
                    await c.resources("genericUser").list(limit=1)
                except Exception as exc:
                    failures.append(exc)

            async with anyio.create_task_group() as tg:
                for c in conns:
                    for _ in range(25):
                        tg.start_soon(call, c)
            assert failures == [], failures[:1]
            assert sb.state.counters["oauth.refresh"] - before == round_ + 1
        record = hubs[0].store.get_by_id(conn.id)
    finally:
        for hub in hubs:
            await hub.aclose()
    refreshes = sb.state.counters["oauth.refresh"] - before
    tally.races += 3 * 50
    tally.record("refresh race (two hubs)", tried=150, lost=sb.state.counters["oauth.refresh_reuse"])
    assert sb.state.counters["oauth.refresh_reuse"] == 0
    assert refreshes == 3
    assert record is not None and record.token_version == 1 + refreshes
