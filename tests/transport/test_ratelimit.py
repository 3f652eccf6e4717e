"""Token-bucket limiters: the window bound, utilisation, server feedback, multi-bucket, concurrency.

Every behavioural test runs against both :class:`InProcessRateLimiter` and :class:`RedisRateLimiter` (the
``env`` fixture), with fake clocks so that no test sleeps for real.
"""

from __future__ import annotations

import bisect
import math
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from connectors.errors import ConfigurationError, RateLimitError
from connectors.runtime.ratelimit import (
    Bucket,
    InProcessRateLimiter,
    RateLimiter,
    RedisRateLimiter,
    bucket_capacity,
    bucket_rate,
)

INF = math.inf


def max_in_window(times: Sequence[float], window: float) -> int:
    """The largest number of ``times`` inside any closed interval of length ``window``."""
    ordered = sorted(times)
    best = 0
    for i, start in enumerate(ordered):
        best = max(best, bisect.bisect_right(ordered, start + window) - i)
    return best


class Env:
    """Builds a limiter of one kind: ``memory`` or ``redis`` (fresh key prefix, cleaned up on exit)."""

    def __init__(self, kind: str, url: str | None) -> None:
        self.kind = kind
        self.url = url

    @asynccontextmanager
    async def limiter(self, clock: Any, *, headroom: float = 0.03, prefix: str | None = None) -> AsyncIterator[Any]:
        if self.kind == "memory":
            yield InProcessRateLimiter(clock=clock.time, sleep=clock.sleep, headroom=headroom)
            return
        assert self.url is not None
        client = Redis.from_url(self.url)
        own_prefix = prefix is None
        prefix = prefix or f"test:connectors:rl:{uuid.uuid4().hex}:"
        try:
            yield RedisRateLimiter(client, prefix=prefix, clock=clock.time, sleep=clock.sleep, headroom=headroom)
        finally:
            if own_prefix:
                keys = [k async for k in client.scan_iter(match=prefix + "*")]
                if keys:
                    await client.delete(*keys)
            await client.aclose()


@pytest.fixture(scope="session", params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def env(request: pytest.FixtureRequest) -> Env:
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    return Env(request.param, url)


async def reserve(limiter: Any, buckets: Sequence[Bucket], clock: Any, n: int) -> list[float]:
    """Acquire ``n`` times on a frozen clock: the slot of each acquisition is ``now + waited``."""
    return [clock.now + await limiter.acquire(buckets, max_wait=INF) for _ in range(n)]


# --------------------------------------------------------------------------------------------------
# Parameters and validation


def test_capacity_and_rate_formulas() -> None:
    assert bucket_capacity(1000, 0.03) == 15
    assert bucket_capacity(100, 0.03) == 1
    assert bucket_capacity(1, 0.5) == 1
    assert bucket_rate(1000, 60.0, 0.03) == pytest.approx(970 / 60)


@pytest.mark.parametrize(("limit", "headroom"), [(1, 0.03), (100, 0.03), (600, 0.03), (1000, 0.03), (60, 0.2)])
def test_capacity_plus_refill_never_exceeds_limit(limit: int, headroom: float) -> None:
    # The guarantee of the module docstring: at most floor(C + r * window) <= limit requests per window.
    assert math.floor(bucket_capacity(limit, headroom) + bucket_rate(limit, 60.0, headroom) * 60.0) <= limit
    assert bucket_capacity(limit, headroom) <= max(1, headroom * limit)


@pytest.mark.parametrize(
    "kwargs", [{"key": "", "limit": 1}, {"key": "k", "limit": 0}, {"key": "k", "limit": 5, "window": 0}]
)
def test_bucket_validation(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Bucket(**kwargs)


@pytest.mark.parametrize("headroom", [0.0, 1.0, -0.1])
def test_headroom_validation(headroom: float) -> None:
    with pytest.raises(ConfigurationError):
        InProcessRateLimiter(headroom=headroom)


def test_both_limiters_satisfy_the_protocol() -> None:
    assert isinstance(InProcessRateLimiter(), RateLimiter)
    assert issubclass(RedisRateLimiter, RateLimiter)


# --------------------------------------------------------------------------------------------------
# The window bound and utilisation


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    limit=st.integers(1, 150),
    window=st.sampled_from([1.0, 60.0]),
    headroom=st.floats(0.01, 0.3),
    pattern=st.lists(st.tuples(st.floats(0.0, 1.5), st.integers(1, 40)), min_size=1, max_size=25),
)
def test_never_more_than_limit_in_any_window(
    env: Env, clocks: Any, limit: int, window: float, headroom: float, pattern: list[tuple[float, int]]
) -> None:
    """Bursts of concurrent acquirers at arbitrary times: the slots never exceed ``limit`` per window."""
    bucket = Bucket("org", limit, window)

    async def main() -> list[float]:
        clock = clocks.manual(advance=False)  # frozen: each acquirer reserves, "sleeps" instantly
        slots: list[float] = []
        async with env.limiter(clock, headroom=headroom) as limiter:
            for gap, burst in pattern:
                clock.now += gap * window
                slots += await reserve(limiter, [bucket], clock, burst)
        return slots

    slots = anyio.run(main)
    assert max_in_window(slots, window) <= limit


@pytest.mark.anyio
@pytest.mark.parametrize(("limit", "window"), [(100, 1.0), (1000, 60.0), (7, 2.0)])
async def test_utilisation_under_saturation(env: Env, clocks: Any, limit: int, window: float) -> None:
    headroom = 0.03
    clock = clocks.manual(advance=False)
    start = clock.now
    async with env.limiter(clock, headroom=headroom) as limiter:
        slots = await reserve(limiter, [Bucket("org", limit, window)], clock, int(4.2 * limit))
    windows = 4
    used = sum(1 for s in slots if s < start + windows * window)
    assert used >= (1 - headroom) * limit * windows - 1e-6
    assert max_in_window(slots, window) <= limit


@pytest.mark.anyio
async def test_sleeping_acquirers_get_gcra_slots(env: Env, clocks: Any) -> None:
    """On an advancing clock, a saturating caller is paced at exactly the refill rate after the burst."""
    bucket = Bucket("org", 100, 1.0)
    clock = clocks.manual(advance=True)
    start = clock.now
    async with env.limiter(clock) as limiter:
        waits = [await limiter.acquire([bucket], max_wait=INF) for _ in range(50)]
    interval = 1.0 / bucket_rate(100, 1.0, 0.03)
    assert waits[0] == 0.0
    assert all(w == pytest.approx(interval) for w in waits[1:])
    assert clock.now - start == pytest.approx(49 * interval)


# --------------------------------------------------------------------------------------------------
# Concurrency: distinct tokens


@pytest.mark.anyio
async def test_concurrent_acquirers_get_distinct_tokens(env: Env, clocks: Any) -> None:
    limit, headroom = 200, 0.03
    bucket = Bucket("org", limit, 1.0)
    clock = clocks.manual(advance=False)
    start = clock.now
    slots: list[float] = []

    async with env.limiter(clock, headroom=headroom) as limiter:

        async def one() -> None:
            slots.append(start + await limiter.acquire([bucket], max_wait=INF))

        async with anyio.create_task_group() as tg:
            for _ in range(300):
                tg.start_soon(one)

    cap = bucket_capacity(limit, headroom)
    interval = 1.0 / bucket_rate(limit, 1.0, headroom)
    expected = [start] * cap + [start + k * interval for k in range(1, 300 - cap + 1)]
    assert sorted(slots) == pytest.approx(expected, abs=1e-6)


@pytest.mark.anyio
async def test_concurrent_sleepers_on_virtual_time_respect_the_bound(env: Env, clocks: Any) -> None:
    bucket = Bucket("org", 50, 1.0)
    clock = clocks.virtual()
    sends: list[float] = []

    async with env.limiter(clock) as limiter:

        async def worker(offset: float) -> None:
            await clock.sleep(offset)
            for _ in range(15):
                await limiter.acquire([bucket], max_wait=INF)
                sends.append(clock.now)

        await clock.run(*[lambda o=i * 0.01: worker(o) for i in range(20)])

    assert len(sends) == 300
    assert max_in_window(sends, 1.0) <= 50
    # 300 tokens at ~48.5/s after a burst of 1: about 6.2 s, i.e. no idle gaps.
    assert max(sends) - min(sends) == pytest.approx(299 / bucket_rate(50, 1.0, 0.03), rel=0.01)


# --------------------------------------------------------------------------------------------------
# max_wait


@pytest.mark.anyio
async def test_wait_over_max_wait_raises_without_taking(env: Env, clocks: Any) -> None:
    bucket = Bucket("org", 100, 60.0)  # capacity 1, one token per ~0.62 s
    clock = clocks.manual(advance=False)
    async with env.limiter(clock) as limiter:
        assert await limiter.acquire([bucket], max_wait=0) == 0.0
        interval = 60.0 / 97
        with pytest.raises(RateLimitError) as info:
            await limiter.acquire([bucket], max_wait=0.1)
        assert info.value.retry_at == pytest.approx(clock.now + interval)
        assert info.value.status_code == 429
        assert clock.sleeps == []
        # Nothing was taken: the next slot is still the first one.
        assert await limiter.acquire([bucket], max_wait=1.0) == pytest.approx(interval)


# --------------------------------------------------------------------------------------------------
# observe() and penalize()


@pytest.mark.anyio
async def test_observed_limit_replaces_the_default(env: Env, clocks: Any) -> None:
    bucket = Bucket("org", 1000, 60.0)
    clock = clocks.manual(advance=False)
    async with env.limiter(clock) as limiter:
        await limiter.observe(bucket, limit=100, remaining=None, reset_at=None)
        slots = await reserve(limiter, [bucket], clock, 20)
    assert slots[1] - slots[0] == pytest.approx(60.0 / 97)


@pytest.mark.anyio
async def test_remaining_zero_waits_until_reset(env: Env, clocks: Any) -> None:
    bucket = Bucket("org", 1000, 60.0)
    clock = clocks.manual(advance=False)
    async with env.limiter(clock) as limiter:
        await limiter.observe(bucket, limit=1000, remaining=0, reset_at=clock.now + 12.5)
        with pytest.raises(RateLimitError) as info:
            await limiter.acquire([bucket], max_wait=5)
        assert info.value.retry_at == pytest.approx(clock.now + 12.5)
        assert await limiter.acquire([bucket], max_wait=INF) == pytest.approx(12.5)


@pytest.mark.anyio
async def test_low_remaining_is_an_allowance_until_reset(env: Env, clocks: Any) -> None:
    """Other clients of the org spent the budget: only ``remaining`` more requests before the reset."""
    bucket = Bucket("org", 1000, 60.0)
    clock = clocks.manual(advance=False)
    now = clock.now
    async with env.limiter(clock) as limiter:
        await limiter.observe(bucket, limit=1000, remaining=3, reset_at=now + 20)
        first = await reserve(limiter, [bucket], clock, 3)
        assert max(first) < now + 1  # the allowance is usable at once
        # A stale response (sent earlier) cannot raise the allowance again.
        await limiter.observe(bucket, limit=1000, remaining=500, reset_at=now + 20)
        assert await limiter.acquire([bucket], max_wait=INF) == pytest.approx(20)
        # A response from the next window opens a new allowance.
        clock.now = now + 21
        await limiter.observe(bucket, limit=1000, remaining=900, reset_at=now + 80)
        assert await limiter.acquire([bucket], max_wait=INF) < 0.1


@pytest.mark.anyio
async def test_late_response_from_an_older_window_is_ignored(env: Env, clocks: Any) -> None:
    bucket = Bucket("org", 1000, 60.0)
    clock = clocks.manual(advance=False)
    now = clock.now
    async with env.limiter(clock) as limiter:
        await limiter.observe(bucket, limit=1000, remaining=800, reset_at=now + 50)
        await limiter.observe(bucket, limit=1000, remaining=0, reset_at=now + 5)  # older window, still running
        assert await limiter.acquire([bucket], max_wait=INF) == 0.0


@pytest.mark.anyio
async def test_reset_in_the_past_or_missing_is_ignored(env: Env, clocks: Any) -> None:
    bucket = Bucket("org", 1000, 60.0)
    clock = clocks.manual(advance=False)
    async with env.limiter(clock) as limiter:
        await limiter.observe(bucket, limit=None, remaining=0, reset_at=clock.now - 1)
        await limiter.observe(bucket, limit=None, remaining=0, reset_at=None)
        assert await limiter.acquire([bucket], max_wait=0) == 0.0


@pytest.mark.anyio
async def test_reset_is_clamped_to_one_window(env: Env, clocks: Any) -> None:
    bucket = Bucket("org", 1000, 60.0)
    clock = clocks.manual(advance=False)
    async with env.limiter(clock) as limiter:
        await limiter.observe(bucket, limit=None, remaining=0, reset_at=clock.now + 3600)
        assert await limiter.acquire([bucket], max_wait=INF) == pytest.approx(60.0)


@pytest.mark.anyio
async def test_penalize_blocks_everyone_until(env: Env, clocks: Any) -> None:
    bucket = Bucket("org", 1000, 60.0)
    clock = clocks.manual(advance=False)
    async with env.limiter(clock) as limiter:
        await limiter.penalize(bucket, until=clock.now + 7)
        await limiter.penalize(bucket, until=clock.now + 3)  # never shortens a penalty
        with pytest.raises(RateLimitError) as info:
            await limiter.acquire([bucket], max_wait=6.9)
        assert info.value.retry_at == pytest.approx(clock.now + 7)
        slots = await reserve(limiter, [bucket], clock, 20)
    assert min(slots) == pytest.approx(clock.now + 7)
    assert max_in_window(slots, 60.0) <= 1000


# --------------------------------------------------------------------------------------------------
# Several buckets


ORG = Bucket("org", 1000, 60.0)
SEARCH = Bucket("org:search", 100, 60.0)


@pytest.mark.anyio
async def test_multi_bucket_is_all_or_nothing(env: Env, clocks: Any) -> None:
    clock = clocks.manual(advance=False)
    async with env.limiter(clock) as limiter:
        await limiter.acquire([ORG, SEARCH], max_wait=0)  # search capacity is 1: now empty
        with pytest.raises(RateLimitError) as info:
            await limiter.acquire([ORG, SEARCH], max_wait=0.1)
        assert info.value.retry_at == pytest.approx(clock.now + 60.0 / 97)
        # The org bucket lost nothing to the failed attempt: its burst minus one token is still there.
        for _ in range(bucket_capacity(1000, 0.03) - 1):
            assert await limiter.acquire([ORG], max_wait=0) == 0.0


@pytest.mark.anyio
async def test_duplicate_buckets_take_one_token(env: Env, clocks: Any) -> None:
    clock = clocks.manual(advance=False)
    async with env.limiter(clock) as limiter:
        await limiter.acquire([SEARCH, SEARCH], max_wait=0)
        assert await limiter.acquire([], max_wait=0) == 0.0
        with pytest.raises(RateLimitError):
            await limiter.acquire([SEARCH], max_wait=0)


@pytest.mark.anyio
async def test_search_waiter_does_not_hold_org_tokens(env: Env, clocks: Any) -> None:
    """While a search request waits for the search bucket, org-only requests keep the org budget."""
    clock = clocks.virtual()
    start = clock.now
    org_sends: list[float] = []
    search_sends: list[float] = []

    async with env.limiter(clock) as limiter:
        await limiter.penalize(SEARCH, until=start + 2.5)  # the search bucket is busy for 2.5 s

        async def search() -> None:
            await limiter.acquire([ORG, SEARCH], max_wait=INF)
            search_sends.append(clock.now - start)

        async def org_only() -> None:
            for _ in range(30):
                await limiter.acquire([ORG], max_wait=INF)
                org_sends.append(clock.now - start)

        await clock.run(search, org_only)

    interval = 60.0 / 970
    # 15 burst tokens, then one per interval: 30 org requests need ~0.93 s, well before the search slot.
    assert max(org_sends) == pytest.approx(15 * interval)
    assert search_sends == [pytest.approx(2.5)]


@pytest.mark.anyio
async def test_multi_bucket_bound_with_mixed_traffic(env: Env, clocks: Any) -> None:
    org = Bucket("o", 60, 6.0)
    search = Bucket("o:s", 12, 6.0)
    clock = clocks.virtual()
    sends: dict[str, list[float]] = {"o": [], "o:s": []}

    async with env.limiter(clock, headroom=0.1) as limiter:

        async def worker(offset: float, with_search: bool) -> None:
            await clock.sleep(offset)
            for _ in range(8):
                buckets = [org, search] if with_search else [org]
                await limiter.acquire(buckets, max_wait=INF)
                for b in buckets:
                    sends[b.key].append(clock.now)

        await clock.run(*[lambda i=i: worker(i * 0.05, i % 3 == 0) for i in range(12)])

    assert len(sends["o"]) == 96
    assert max_in_window(sends["o"], 6.0) <= 60
    assert max_in_window(sends["o:s"], 6.0) <= 12


# --------------------------------------------------------------------------------------------------
# Redis specifics


@pytest.mark.redis
@pytest.mark.anyio
async def test_redis_limiters_share_one_budget(redis_url: str, redis_prefix: str, clocks: Any) -> None:
    clock = clocks.manual(advance=False)
    start = clock.now
    bucket = Bucket("org", 100, 1.0)
    clients = [Redis.from_url(redis_url), Redis.from_url(redis_url)]
    try:
        limiters = [RedisRateLimiter(c, prefix=redis_prefix, clock=clock.time, sleep=clock.sleep) for c in clients]
        slots: list[float] = []

        async def one(limiter: RedisRateLimiter) -> None:
            slots.append(start + await limiter.acquire([bucket], max_wait=INF))

        async with anyio.create_task_group() as tg:
            for i in range(200):
                tg.start_soon(one, limiters[i % 2])
        interval = 1.0 / 97
        assert sorted(slots) == pytest.approx([start + k * interval for k in range(200)], abs=1e-6)

        # What one process observes, the other obeys.
        await limiters[0].penalize(bucket, until=start + 1000)
        with pytest.raises(RateLimitError):
            await limiters[1].acquire([bucket], max_wait=10)
    finally:
        for c in clients:
            await c.aclose()


@pytest.mark.redis
@pytest.mark.anyio
async def test_redis_state_layout_and_expiry(redis_url: str, redis_prefix: str) -> None:
    limiter = RedisRateLimiter(redis_url, prefix=redis_prefix)  # owns its client
    try:
        bucket = Bucket("acme", 1000)
        await limiter.acquire([bucket], max_wait=0)
        await limiter.observe(bucket, limit=500, remaining=400, reset_at=None)
        client = Redis.from_url(redis_url, decode_responses=True)
        try:
            state = await client.hgetall(limiter.key_for(bucket))
            ttl = await client.pttl(limiter.key_for(bucket))
        finally:
            await client.aclose()
        assert limiter.key_for(bucket) == redis_prefix + "acme"
        assert state["limit"] == "500"
        assert float(state["tat"]) > 0
        assert 3_600_000 < ttl <= 3_600_000 + 61_000 + 1000
    finally:
        await limiter.aclose()


BUCKET_SETS = {
    "org": ("o",),
    "search": ("o", "o:s"),
    "bulk": ("o", "o:b"),
    "all": ("o", "o:s", "o:b"),
}


def _buckets(limits: dict[str, int], window: float, names: Sequence[str]) -> list[Bucket]:
    return [Bucket(n, limits[n], window) for n in names]


@settings(max_examples=30, deadline=None)
@given(
    limits=st.fixed_dictionaries({"o": st.integers(5, 80), "o:s": st.integers(1, 20), "o:b": st.integers(1, 40)}),
    headroom=st.floats(0.01, 0.3),
    pattern=st.lists(
        st.tuples(st.floats(0.0, 0.5), st.lists(st.sampled_from(sorted(BUCKET_SETS)), min_size=1, max_size=12)),
        min_size=1,
        max_size=20,
    ),
)
def test_multi_bucket_never_more_than_limit_in_any_window(
    env: Env, clocks: Any, limits: dict[str, int], headroom: float, pattern: list[tuple[float, list[str]]]
) -> None:
    """Overlapping budgets (org, org+search, org+bulk, all three) under bursts: every budget holds."""
    window = 10.0

    async def main() -> dict[str, list[float]]:
        clock = clocks.manual(advance=False)
        sends: dict[str, list[float]] = {n: [] for n in limits}
        async with env.limiter(clock, headroom=headroom) as limiter:
            for gap, burst in pattern:
                clock.now += gap * window
                for kind in burst:
                    names = BUCKET_SETS[kind]
                    slot = clock.now + await limiter.acquire(_buckets(limits, window, names), max_wait=INF)
                    for n in names:
                        sends[n].append(slot)
        return sends

    sends = anyio.run(main)
    for name, times in sends.items():
        assert max_in_window(times, window) <= limits[name], name


OPS = st.one_of(
    st.tuples(st.just("advance"), st.floats(0.0, 3.0)),
    st.tuples(st.just("acquire"), st.sampled_from(sorted(BUCKET_SETS)), st.sampled_from([0.0, 1.0, INF])),
    st.tuples(
        st.just("observe"),
        st.sampled_from(["o", "o:s"]),
        st.one_of(st.none(), st.integers(1, 50)),
        st.one_of(st.none(), st.integers(-1, 30)),
        st.one_of(st.none(), st.floats(-1.0, 15.0)),
    ),
    st.tuples(st.just("penalize"), st.sampled_from(["o", "o:s", "o:b"]), st.floats(-1.0, 5.0)),
)


@pytest.mark.redis
@settings(max_examples=40, deadline=None)
@given(ops=st.lists(OPS, min_size=1, max_size=60), headroom=st.sampled_from([0.03, 0.1, 0.25]))
def test_redis_scripts_match_the_python_reference(redis_url: str, ops: list[tuple[Any, ...]], headroom: float) -> None:
    """Differential test: the Lua scripts and the in-process code give the same slots and errors."""
    limits = {"o": 30, "o:s": 5, "o:b": 12}
    window = 6.0

    async def run(kind: str) -> list[Any]:
        clock = ManualClockProxy()
        out: list[Any] = []
        async with Env(kind, redis_url).limiter(clock, headroom=headroom) as limiter:
            for op in ops:
                if op[0] == "advance":
                    clock.now += op[1]
                elif op[0] == "acquire":
                    try:
                        out.append(
                            round(
                                await limiter.acquire(_buckets(limits, window, BUCKET_SETS[op[1]]), max_wait=op[2]),
                                6,
                            )
                        )
                    except RateLimitError as exc:
                        out.append(("limited", round(exc.retry_at - clock.now, 6)))
                elif op[0] == "observe":
                    _, name, limit, remaining, reset = op
                    reset_at = None if reset is None else clock.now + reset
                    await limiter.observe(
                        Bucket(name, limits[name], window),
                        limit=limit,
                        remaining=remaining,
                        reset_at=reset_at,
                    )
                else:
                    await limiter.penalize(Bucket(op[1], limits[op[1]], window), until=clock.now + op[2])
        return out

    assert anyio.run(run, "memory") == anyio.run(run, "redis")


class ManualClockProxy:
    """A frozen clock (``sleep`` returns at once), like ``clocks.manual(advance=False)``."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def time(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        await anyio.lowlevel.checkpoint()
