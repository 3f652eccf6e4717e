"""Several real processes (``multiprocessing`` spawn) on one connection, against one sandbox over HTTP.

* The refresh race: processes hammer one OAuth connection while its 1 s access tokens keep expiring; the
  sandbox rotates refresh tokens and revokes the whole family when a rotated one is presented again. Zero
  failed calls, zero reuse, about one refresh per expiry, on SQLite and on PostgreSQL.
* The shared budget: two processes configured only by environment variables (``CONNECTORS_REDIS_URL`` ...)
  share one Redis org budget against a sandbox with a compressed rate window: zero 429s.
"""

from __future__ import annotations

import base64
import math
import multiprocessing
import os
import random
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from connectors import Connectors, Settings
from connectors.kustomer.sandbox import Sandbox, SandboxSettings, running_sandbox
from connectors.runtime.secrets import SecretBox
from connectors.runtime.store import ConnectionStore

pytestmark = [pytest.mark.anyio, pytest.mark.http, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
CLIENT = {"client_id": "unified-connectors-test", "client_secret": "test-client-secret"}
REDIRECT_URI = "https://app.example.com/oauth/callback"


@pytest.fixture
def workers() -> Iterator[Callable[[dict[str, Any], int], list[dict[str, Any]]]]:
    """``workers(spec, n)``: run ``_workers.run`` in ``n`` spawned processes; return their reports."""
    sys.path.insert(0, str(HERE))
    import _workers

    ctx = multiprocessing.get_context("spawn")
    started: list[Any] = []

    def go(spec: dict[str, Any], n: int) -> list[dict[str, Any]]:
        barrier = ctx.Barrier(n)
        results = ctx.Queue()
        procs = [ctx.Process(target=_workers.run, args=(spec, barrier, results), daemon=True) for _ in range(n)]
        started.extend(procs)
        for proc in procs:
            proc.start()
        reports = [results.get(timeout=120) for _ in procs]
        for proc in procs:
            proc.join(30)
        crashes = [r["crash"] for r in reports if "crash" in r]
        assert not crashes, crashes[0]
        assert all(proc.exitcode == 0 for proc in procs)
        return reports

    yield go
    for proc in started:
        if proc.is_alive():
            proc.kill()
    sys.path.remove(str(HERE))


# -- the refresh race ---------------------------------------------------------------------------------------------

TTL = 1  # seconds: the sandbox's shortest access-token lifetime
MARGIN = 0.25
DURATION = 4.0
PROCESSES = 3
CONCURRENCY = 3


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
async def test_refresh_race_across_processes(
    database: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    workers: Callable[[dict[str, Any], int], list[dict[str, Any]]],
    run_consent_fn: Callable[..., Any],
) -> None:
    db_url = f"sqlite:///{tmp_path / 'race.db'}" if database == "sqlite" else request.getfixturevalue("postgres_url")
    key = os.urandom(32)
    owner = f"race-{database}-{random.randrange(10**9)}"
    settings = SandboxSettings(
        customers=3,
        companies=1,
        users=2,
        teams=0,
        oauth_access_token_ttl_seconds=TTL,
        rate_limit_enabled=False,  # not what this test is about
    )
    with running_sandbox(settings) as (sb, base_url):
        sb.register_oauth_client(CLIENT["client_id"], CLIENT["client_secret"], [REDIRECT_URI])
        store = ConnectionStore(db_url, secret_box=SecretBox(key))
        try:
            async with Connectors(settings=Settings(kustomer=CLIENT), store=store) as hub:
                authorization = await hub.authorize(
                    "kustomer", owner, operations=["genericUser::list"], redirect_uri=REDIRECT_URI, base_url=base_url
                )
                redirect = await run_consent_fn(authorization.url)
                conn = await hub.complete_authorization(code=redirect.code, state=redirect.state)
            spec = {
                "db_url": db_url,
                "key": key,
                "owner": owner,
                "refresh_margin": MARGIN,
                "kustomer": CLIENT,
                "duration": DURATION,
                "concurrency": CONCURRENCY,
                "pause": 0.005,
            }
            reports = workers(spec, PROCESSES)
            final = store.get_by_id(conn.id)
        finally:
            store.close()
        counters = dict(sb.state.counters)

    start = min(r["started"] for r in reports)
    t1 = max(r["finished"] for r in reports)
    calls = sum(r["ok"] for r in reports)
    refreshes = counters.get("oauth.refresh", 0)
    # Tokens are refreshed lazily, by calls: the consent token expired while the workers started, so their
    # warm-up calls refresh once; then, while calls never stop, a token issued at i lives TTL seconds and is
    # refreshed once it is within MARGIN of its end, so successive tokens are issued at least TTL - MARGIN
    # apart: over the run there are at most 1 + (t1 - start) / (TTL - MARGIN) expiries to refresh. A refresh
    # happens only while the stored token_version is still the one that expired (lock, re-read,
    # compare-and-swap), so an extra refresh could only be a reactive one after a 401 on a token the provider
    # dropped before our margin: at most one per process in flight at that moment, hence the slack of
    # PROCESSES. Calls never stop, so tokens keep being refreshed as they expire: the lower bound (half the
    # expiries, for a loaded machine where calls slow down) shows the chain of refreshes went on.
    expiries = 1 + (t1 - start) / (TTL - MARGIN)
    print(
        f"\n{database}: {PROCESSES} processes x {CONCURRENCY} tasks, {calls} calls in {t1 - start:.2f}s, "
        f"{refreshes} refreshes of {TTL}s tokens (expiries <= {expiries:.1f}, bound +{PROCESSES}), "
        f"per process (calls, refreshes) {[(r['ok'], r['refreshes']) for r in reports]}, "
        f"401s {counters.get('status.401', 0)}"
    )
    assert [r["failures"] for r in reports] == [[]] * PROCESSES
    assert all(r["ok"] > 20 for r in reports)
    assert counters.get("oauth.refresh_reuse", 0) == 0
    assert sum(r["refreshes"] for r in reports) == refreshes  # each refresh was made by exactly one process
    assert refreshes <= math.floor(expiries) + PROCESSES
    assert refreshes >= (t1 - start) / TTL / 2
    assert final is not None and final.status == "active"
    assert final.token_version == 1 + refreshes  # one compare-and-swap per refresh: none lost, none doubled


# -- the shared Redis budget through the hub -----------------------------------------------------------------------

LIMIT = 60
WINDOW = 2.0
HEADROOM = 0.1
BUDGET_DURATION = 4.0


@pytest.mark.redis
async def test_two_processes_share_the_org_budget_through_redis(
    tmp_path: Path, redis_url: str, workers: Callable[[dict[str, Any], int], list[dict[str, Any]]]
) -> None:
    seed = random.randrange(10**6)  # a fresh org id, hence fresh Redis keys
    key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    db_url = f"sqlite:///{tmp_path / 'budget.db'}"
    environ = {
        "CONNECTORS_HOME": str(tmp_path),
        "CONNECTORS_DATABASE_URL": db_url,
        "CONNECTORS_SECRET_KEY": key,
        "CONNECTORS_REDIS_URL": redis_url,
        "CONNECTORS_RATE_HEADROOM": str(HEADROOM),
        "KUSTOMER_RATE_LIMIT": str(LIMIT),
        "KUSTOMER_RATE_WINDOW": str(WINDOW),
    }
    settings = SandboxSettings(
        seed=seed, customers=3, companies=1, users=4, teams=0, rate_limit_per_minute=LIMIT, rate_window_seconds=WINDOW
    )
    sandbox = Sandbox(settings)
    org_id = sandbox.org_id
    try:
        with running_sandbox(sandbox=sandbox) as (sb, base_url):
            store = ConnectionStore.from_env(environ, embedded_default=False)
            try:
                async with Connectors(settings=Settings.from_env(environ), store=store) as hub:
                    await hub.connect("kustomer", "budget", api_key=sb.mint_api_key(), base_url=base_url)
            finally:
                store.close()
            spec = {
                "environ": environ,
                "owner": "budget",
                "call": "list",
                "duration": BUDGET_DURATION,
                "concurrency": 4,
            }
            reports = workers(spec, 2)
            log = list(sb.state.request_log)
            counters = dict(sb.state.counters)
    finally:
        client = redis.Redis.from_url(redis_url)
        for name in client.scan_iter(match=f"connectors:rl:kustomer:{org_id}*"):
            client.delete(name)
        client.close()

    start = min(r["started"] for r in reports)
    end = start + BUDGET_DURATION
    served = [e for e in log if e.path == "/v1/users" and e.status == 200 and start <= e.at <= end]
    budget = LIMIT / WINDOW * BUDGET_DURATION
    print(
        f"\n2 processes through the hub, {LIMIT}/{WINDOW:g}s, headroom {HEADROOM}: {len(served)} calls in "
        f"{BUDGET_DURATION:g}s = {len(served) / budget:.0%} of the budget, {counters.get('rate_limited', 0)} x 429, "
        f"per process {[r['ok'] for r in reports]}"
    )
    assert counters.get("rate_limited", 0) == 0
    assert counters.get("status.429", 0) == 0
    assert [r["failures"] for r in reports] == [[], []]
    assert len(served) >= 0.7 * budget  # the budget is used, not just respected
    assert all(r["ok"] >= 0.25 * budget for r in reports)  # and shared
