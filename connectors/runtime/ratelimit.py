"""Client-side rate budgets for Kustomer orgs: small token buckets, in-process or shared through Redis.

Kustomer's budget is org-wide: every API key and every worker process of an org spends the same
``limit`` requests per 60 s window (search by API keys has its own 100/min budget). The server counts in a
**fixed** window whose alignment the client does not control. This module paces requests so that the whole
org (every process sharing a :class:`RedisRateLimiter`, or every task sharing an
:class:`InProcessRateLimiter`) never gets a 429 from its own traffic, while still using almost all of the
budget.

Why a token bucket with a small capacity is enough
--------------------------------------------------
Each :class:`Bucket` is a token bucket with refill rate ``r = limit * (1 - headroom) / window`` and capacity
``C = max(1, floor(headroom * limit / 2))``. A token bucket that started at most full sends, in **any**
interval of length ``window``, at most ``C + r * window`` requests (the tokens present at the start plus
those refilled during the interval). With the values above this is
``headroom * limit / 2 + (1 - headroom) * limit <= limit`` (for ``C == 1`` the bound is
``1 + (1 - headroom) * limit < limit + 1``, i.e. ``<= limit`` requests). Kustomer's fixed windows are
intervals of length ``window``, so the bucket causes **zero 429s whatever the window alignment**, and under
saturation it sends ``r``, i.e. ``>= (1 - headroom)`` of the budget (97 % with the default ``headroom=0.03``).

Only half of the headroom is used by the capacity. The other half, ``headroom * limit / 2`` requests, absorbs
timing noise between the moment a token is taken and the moment Kustomer counts the request: latency
jitter, sleep overshoot and clock skew between machines. A request may arrive up to
``(headroom * limit / 2) / r ≈ headroom * window / 2`` seconds "late" without breaking the bound: about 0.9 s
for a 60 s window. When tests compress the window (say to 2 s) that tolerance shrinks with it (about 30 ms),
so compressed-time benchmarks should use a larger ``headroom`` or a longer window.

Implementation: GCRA (the "virtual scheduling" form of a token bucket)
----------------------------------------------------------------------
Each bucket stores a *theoretical arrival time* ``tat``. With emission interval ``T = 1 / r`` and burst
tolerance ``tau = (C - 1) * T``, a request may go at the earliest at ``max(now, tat - tau)``; taking a token
at time ``s`` sets ``tat = max(tat, s) + T``. :meth:`RateLimiter.acquire` **reserves** its slot at once (one
atomic step, one Redis round trip) and then sleeps until the slot: waiters are served first come first served,
nothing busy-loops, and no two acquirers can get the same token, in one process or across processes. Slots
reserved in the future keep the bound above: the bound holds for any set of times that the GCRA recurrence
accepts, in whatever order they were reserved.

Multi-bucket acquire (e.g. ``[org, org:search]``) is all-or-nothing, exact and does not hoard. One atomic
step finds the earliest time ``s`` at which **every** bucket can give a token (a fixed point over the
buckets' earliest slots), reserves a token in each at ``s``, or, if ``s`` is further than ``max_wait``,
takes nothing and raises :class:`~connectors.errors.RateLimitError` with ``retry_at = s``. The request is
sent at ``s``, the very time charged to each bucket, so the bound holds for every bucket. A bucket whose own
next slot is much earlier than ``s`` (the org bucket while the search bucket makes a search request wait)
must not simply jump its ``tat`` to ``s``: everything before ``s`` would be lost to org-only requests. Such a
reservation is kept aside in a short sorted list of *future reservations*; later requests still get the
bucket's earlier slots as long as the GCRA recurrence, run through the list, still accepts every reservation
in it. Reservations are folded into ``tat`` once time or the chain reaches them. The list only holds
reservations of multi-bucket requests that wait on another bucket, so it stays short.

Server feedback
---------------
:meth:`RateLimiter.observe` feeds ``x-ratelimit-*`` headers back. ``limit`` replaces the bucket's local
default (the server is the authority). ``remaining`` and ``reset_at`` open a *window allowance*: until
``reset_at`` at most ``remaining`` more requests may be taken; every token taken before ``reset_at`` spends
it, later observations of the same window can only lower it (a response is a stale snapshot: requests of
ours still in flight are not counted in it yet), and an observation with a later ``reset_at`` (by more than
half a window) starts a new window. Traffic of other clients of the org that do not share this limiter
shows up as a ``remaining`` lower than ours would explain; once the allowance is spent (or ``remaining`` is
0) acquirers wait until ``reset_at``. :meth:`RateLimiter.penalize` (after a 429) blocks a bucket until a time.

Time and clocks
---------------
Time comes from the injected ``clock`` (epoch seconds; default :func:`time.time`), so tests can compress or
freeze it. :class:`RedisRateLimiter` passes the **client's** clock into its Lua scripts instead of using
Redis ``TIME``; processes on different machines must therefore have NTP-synchronised clocks. A process whose
clock runs ``d`` seconds ahead can spend up to ``r * d`` tokens early, which the unused half of the headroom
absorbs while ``d`` stays well under ``headroom * window / 2``.

Redis layout: one hash per bucket, ``<prefix><bucket.key>``, with fields ``tat``, ``fut`` (the future
reservations), ``limit``, ``until``, ``wreset`` and ``wrem``, expiring an hour after it last mattered. A
multi-bucket acquire touches several keys in one script, so on Redis Cluster give the keys of one org a
common hash tag (``kustomer:{acme}`` and ``kustomer:{acme}:search``).

Cancelling a task that sleeps on a reserved slot does not give the slot back (doing so could break the
bound for slots reserved after it); the budget lost is one request per cancelled waiter.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

import anyio

from connectors.errors import ConfigurationError, RateLimitError

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "Bucket",
    "Clock",
    "InProcessRateLimiter",
    "RateLimiter",
    "RedisRateLimiter",
    "Sleep",
    "bucket_capacity",
    "bucket_rate",
]

Clock = Callable[[], float]
"""Returns the current time in epoch seconds (``time.time`` or a test clock)."""

Sleep = Callable[[float], Awaitable[None]]
"""Sleeps for the given number of seconds (``anyio.sleep`` or a test double)."""

_FAR: Final = 1e18  # stands in for an infinite max_wait in Lua, which cannot parse "inf" portably
_MAX_ROUNDS: Final = 10_000  # bound on the fixed-point search of a multi-bucket slot


@dataclass(frozen=True)
class Bucket:
    """A budget of ``limit`` requests per ``window`` seconds, shared by everything that uses ``key``.

    ``limit`` is only the default until the server reports its own (``x-ratelimit-limit``, fed back
    through :meth:`RateLimiter.observe`). Two buckets with the same ``key`` are the same budget.

    Attributes:
        key: the budget's identity, e.g. ``kustomer:acme`` (org-wide) or ``kustomer:acme:search``.
        limit: requests allowed per window, before any server observation.
        window: length of the window in seconds (Kustomer: 60).
    """

    key: str
    limit: int
    window: float = 60.0

    def __post_init__(self) -> None:
        if not self.key:
            raise ConfigurationError("Bucket.key must not be empty")
        if self.limit < 1:
            raise ConfigurationError(f"Bucket {self.key!r}: limit must be >= 1, got {self.limit}")
        if not (self.window > 0 and math.isfinite(self.window)):
            raise ConfigurationError(f"Bucket {self.key!r}: window must be > 0, got {self.window}")


@runtime_checkable
class RateLimiter(Protocol):
    """Paces requests against shared budgets (see the module docstring for the algorithm)."""

    async def acquire(self, buckets: Sequence[Bucket], *, max_wait: float) -> float:
        """Take one token from each bucket, waiting for them as needed.

        Args:
            buckets: the budgets the request spends (duplicates by key count once).
            max_wait: the longest wait acceptable, in seconds.

        Returns:
            The seconds waited (0.0 when every token was available at once).

        Raises:
            RateLimitError: the wait needed exceeds ``max_wait``; raised before waiting, with ``retry_at``
                (epoch seconds) set to the earliest time the tokens could be had.
        """
        ...

    async def observe(
        self, bucket: Bucket, *, limit: int | None, remaining: int | None, reset_at: float | None
    ) -> None:
        """Feed back what the server reported about ``bucket`` (``x-ratelimit-*`` headers).

        Args:
            bucket: the budget the headers describe.
            limit: ``x-ratelimit-limit``; replaces the bucket's local default.
            remaining: ``x-ratelimit-remaining``; with ``reset_at``, the most requests still allowed in
                the server's current window.
            reset_at: ``x-ratelimit-reset`` as epoch seconds.
        """
        ...

    async def penalize(self, bucket: Bucket, *, until: float) -> None:
        """After a 429: nobody acquires from ``bucket`` before ``until`` (epoch seconds)."""
        ...


def bucket_capacity(limit: int, headroom: float) -> int:
    """Return the token-bucket capacity (burst) for a budget: ``max(1, floor(headroom * limit / 2))``."""
    return max(1, math.floor(limit * headroom / 2))


def bucket_rate(limit: int, window: float, headroom: float) -> float:
    """Return the refill rate in tokens per second: ``limit * (1 - headroom) / window``."""
    return limit * (1.0 - headroom) / window


def _interval(limit: int, window: float, headroom: float) -> float:
    # Same expression (and so the same IEEE result) as in the Lua scripts below.
    return window / (limit * (1.0 - headroom))


def _check_headroom(headroom: float) -> float:
    if not 0.0 < headroom < 1.0:
        raise ConfigurationError(f"headroom must be in (0, 1), got {headroom}")
    return float(headroom)


def _dedupe(buckets: Sequence[Bucket]) -> list[Bucket]:
    if isinstance(buckets, Bucket):  # a lone Bucket is a common slip; accept it
        return [buckets]
    seen: dict[str, Bucket] = {}
    for bucket in buckets:
        seen.setdefault(bucket.key, bucket)
    return list(seen.values())


def _too_long(buckets: Sequence[Bucket], at: float, now: float, max_wait: float) -> RateLimitError:
    keys = ", ".join(b.key for b in buckets)
    cap = max(max_wait, 0.0)
    return RateLimitError(
        f"rate budget {keys}: next slot in {at - now:.2f}s exceeds the wait limit of {cap:.2f}s",
        retry_at=at,
    )


# --------------------------------------------------------------------------------------------------
# In-process


@dataclass(slots=True)
class _State:
    tat: float = 0.0  # GCRA theoretical arrival time
    fut: list[float] = field(default_factory=list)  # sorted future reservations kept off the chain
    limit: int | None = None  # last x-ratelimit-limit seen
    until: float = 0.0  # penalty: no token before this
    wreset: float = 0.0  # server window reset of the allowance
    wrem: int = 0  # allowance left before wreset


@dataclass(slots=True)
class _View:
    """One bucket during one atomic step: its state and derived parameters."""

    st: _State
    interval: float  # T
    tau: float  # burst tolerance (C - 1) * T
    lo: float  # no slot before this (now, penalty, spent allowance)


def _view(st: _State, bucket: Bucket, now: float, headroom: float) -> _View:
    limit = st.limit or bucket.limit
    interval = _interval(limit, bucket.window, headroom)
    while st.fut and st.fut[0] <= now:  # reservations whose time has come join the chain
        st.tat = max(st.tat, st.fut.pop(0)) + interval
    lo = max(now, st.until)
    if st.wrem <= 0 and st.wreset > lo:
        lo = st.wreset
    return _View(st, interval, (bucket_capacity(limit, headroom) - 1) * interval, lo)


def _earliest(v: _View, x: float) -> float:
    """The earliest slot >= x that the GCRA recurrence accepts together with every future reservation."""
    x = max(x, v.lo)
    fut, t, interval, tau = v.st.fut, v.st.tat, v.interval, v.tau
    for k in range(len(fut) + 1):  # try the gap before fut[k] (or after the last one)
        y = max(x, t - tau)
        if k > 0:
            y = max(y, fut[k - 1])
        if k == len(fut) or y <= fut[k]:
            t2 = max(t, y) + interval
            for f in fut[k:]:
                if f < t2 - tau:
                    break
                t2 = max(t2, f) + interval
            else:
                return y
        if k < len(fut):
            t = max(t, fut[k]) + interval
    raise AssertionError("unreachable: the gap after the last reservation always fits")  # pragma: no cover


def _take(v: _View, at: float) -> None:
    st = v.st
    t, i = st.tat, 0
    while i < len(st.fut) and st.fut[i] < at:  # the chain just before `at`
        t = max(t, st.fut[i]) + v.interval
        i += 1
    if at > t and at > v.lo:
        # An idle gap precedes `at` that others may still use: keep the reservation off the chain.
        st.fut.insert(i, at)
    else:
        st.tat = max(t, at) + v.interval
        del st.fut[:i]
    if at < st.wreset:
        st.wrem -= 1


def _common_slot(views: Sequence[_View], now: float) -> float:
    """The earliest time >= now at which every bucket accepts a token (a fixed point)."""
    at = now
    for _ in range(_MAX_ROUNDS):
        nxt = max(_earliest(v, at) for v in views)
        if nxt == at:
            return at
        at = nxt
    return math.inf  # pragma: no cover - needs thousands of interleaved future reservations


def _observe(
    st: _State,
    bucket: Bucket,
    now: float,
    limit: int | None,
    remaining: int | None,
    reset_at: float | None,
) -> None:
    if limit is not None and limit > 0:
        st.limit = int(limit)
    if remaining is None or reset_at is None or reset_at <= now:
        return
    reset_at = min(reset_at, now + bucket.window)  # a fixed window cannot reset later than that
    remaining = max(int(remaining), 0)
    half = bucket.window / 2
    if st.wreset <= now or reset_at >= st.wreset + half:  # a new server window
        st.wreset, st.wrem = reset_at, remaining
    elif reset_at > st.wreset - half:  # the same window: responses only ever lower the allowance
        st.wrem = min(st.wrem, remaining)
        st.wreset = max(st.wreset, reset_at)
    # else: a late response from an older window; ignore it


class InProcessRateLimiter:
    """Token buckets shared by every task (and thread) of one process.

    Args:
        clock: current time in epoch seconds.
        sleep: how to wait.
        headroom: fraction of each budget kept unused (see the module docstring); in ``(0, 1)``.
    """

    def __init__(self, *, clock: Clock = time.time, sleep: Sleep = anyio.sleep, headroom: float = 0.03) -> None:
        self._clock = clock
        self._sleep = sleep
        self._headroom = _check_headroom(headroom)
        self._states: dict[str, _State] = {}
        self._lock = threading.Lock()  # held only for the synchronous bookkeeping, never across awaits

    @property
    def headroom(self) -> float:
        """The fraction of each budget kept unused."""
        return self._headroom

    def _state(self, key: str) -> _State:
        st = self._states.get(key)
        if st is None:
            st = self._states[key] = _State()
        return st

    def _step(self, buckets: Sequence[Bucket], now: float, budget: float) -> tuple[bool, float]:
        with self._lock:
            views = [_view(self._state(b.key), b, now, self._headroom) for b in buckets]
            at = _common_slot(views, now)
            if at - now > budget:
                return False, at
            for v in views:
                _take(v, at)
            return True, at

    async def acquire(self, buckets: Sequence[Bucket], *, max_wait: float) -> float:
        """Take one token from each bucket, waiting as needed; see :meth:`RateLimiter.acquire`."""
        pending = _dedupe(buckets)
        if not pending:
            return 0.0
        now = self._clock()
        ok, at = self._step(pending, now, max_wait)
        if not ok:
            raise _too_long(pending, at, now, max_wait)
        if at <= now:
            return 0.0
        await self._sleep(at - now)
        return max(at, self._clock()) - now

    async def observe(
        self, bucket: Bucket, *, limit: int | None, remaining: int | None, reset_at: float | None
    ) -> None:
        """Feed back ``x-ratelimit-*`` headers; see :meth:`RateLimiter.observe`."""
        with self._lock:
            _observe(self._state(bucket.key), bucket, self._clock(), limit, remaining, reset_at)

    async def penalize(self, bucket: Bucket, *, until: float) -> None:
        """Block ``bucket`` until ``until``; see :meth:`RateLimiter.penalize`."""
        with self._lock:
            st = self._state(bucket.key)
            st.until = max(st.until, until)

    async def aclose(self) -> None:
        """Nothing to release; present for symmetry with :class:`RedisRateLimiter`."""


# --------------------------------------------------------------------------------------------------
# Redis

# KEYS: one hash per bucket. ARGV: now, budget, headroom, then (default limit, window) for each key.
# Returns {ok (1|0), slot (string)}. A line-by-line mirror of _view, _earliest, _common_slot and _take.
_ACQUIRE_LUA: Final = """
local now = tonumber(ARGV[1])
local budget = tonumber(ARGV[2])
local headroom = tonumber(ARGV[3])
local function fmt(x) return string.format('%.17g', x) end
local V = {}
for i = 1, #KEYS do
  local f = redis.call('HMGET', KEYS[i], 'tat', 'fut', 'limit', 'until', 'wreset', 'wrem')
  local limit = tonumber(f[3]) or tonumber(ARGV[2 + 2 * i])
  local window = tonumber(ARGV[3 + 2 * i])
  local v = {tat = tonumber(f[1]) or 0, fut = {}, untl = tonumber(f[4]) or 0, wreset = tonumber(f[5]) or 0,
             wrem = tonumber(f[6]) or 0, window = window}
  if f[2] then
    for x in string.gmatch(f[2], '[^,]+') do v.fut[#v.fut + 1] = tonumber(x) end
  end
  v.interval = window / (limit * (1.0 - headroom))
  v.tau = (math.max(1, math.floor(limit * headroom / 2)) - 1) * v.interval
  while #v.fut > 0 and v.fut[1] <= now do
    v.tat = math.max(v.tat, table.remove(v.fut, 1)) + v.interval
  end
  v.lo = math.max(now, v.untl)
  if v.wrem <= 0 and v.wreset > v.lo then v.lo = v.wreset end
  V[i] = v
end

local function earliest(v, x)
  if v.lo > x then x = v.lo end
  local fut, t, m = v.fut, v.tat, #v.fut
  for k = 0, m do
    local y = math.max(x, t - v.tau)
    if k > 0 and fut[k] > y then y = fut[k] end
    if k == m or y <= fut[k + 1] then
      local t2 = math.max(t, y) + v.interval
      local ok = true
      for j = k + 1, m do
        if fut[j] < t2 - v.tau then ok = false break end
        t2 = math.max(t2, fut[j]) + v.interval
      end
      if ok then return y end
    end
    if k < m then t = math.max(t, fut[k + 1]) + v.interval end
  end
  return x
end

local at = now
local settled = false
for _ = 1, 10000 do
  local nxt = at
  for i = 1, #V do
    local y = earliest(V[i], at)
    if y > nxt then nxt = y end
  end
  if nxt == at then settled = true break end
  at = nxt
end
if (not settled) or at - now > budget then
  return {0, fmt(at)}
end

for i = 1, #KEYS do
  local v = V[i]
  local t, idx = v.tat, 1
  while idx <= #v.fut and v.fut[idx] < at do
    t = math.max(t, v.fut[idx]) + v.interval
    idx = idx + 1
  end
  if at > t and at > v.lo then
    table.insert(v.fut, idx, at)
  else
    v.tat = math.max(t, at) + v.interval
    for _ = 1, idx - 1 do table.remove(v.fut, 1) end
  end
  if at < v.wreset then v.wrem = v.wrem - 1 end
  local parts = {}
  for j = 1, #v.fut do parts[j] = fmt(v.fut[j]) end
  redis.call('HSET', KEYS[i], 'tat', fmt(v.tat), 'fut', table.concat(parts, ','),
             'wrem', string.format('%d', v.wrem))
  local last = math.max(v.tat, v.untl, v.wreset, v.fut[#v.fut] or 0)
  local horizon = math.min(last - now + v.window, 86400)
  redis.call('PEXPIRE', KEYS[i], string.format('%d', math.ceil(horizon * 1000) + 3600000))
end
return {1, fmt(at)}
"""

# KEYS[1]: the bucket hash. ARGV: mode ('observe'|'penalize'), now, window, then
# observe: limit, remaining, reset_at ('' for none); penalize: until. Mirrors _observe / penalize.
_UPDATE_LUA: Final = """
local key = KEYS[1]
local now = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
if ARGV[1] == 'penalize' then
  local untl = tonumber(ARGV[4])
  local cur = tonumber(redis.call('HGET', key, 'until')) or 0
  if untl > cur then redis.call('HSET', key, 'until', string.format('%.17g', untl)) end
else
  local limit = tonumber(ARGV[4])
  local remaining = tonumber(ARGV[5])
  local reset = tonumber(ARGV[6])
  if limit and limit > 0 then redis.call('HSET', key, 'limit', string.format('%d', limit)) end
  if remaining and reset and reset > now then
    reset = math.min(reset, now + window)
    if remaining < 0 then remaining = 0 end
    local f = redis.call('HMGET', key, 'wreset', 'wrem')
    local wreset = tonumber(f[1]) or 0
    local wrem = tonumber(f[2]) or 0
    local half = window / 2
    if wreset <= now or reset >= wreset + half then
      redis.call('HSET', key, 'wreset', string.format('%.17g', reset), 'wrem', string.format('%d', remaining))
    elseif reset > wreset - half then
      redis.call('HSET', key, 'wreset', string.format('%.17g', math.max(wreset, reset)),
                 'wrem', string.format('%d', math.min(wrem, remaining)))
    end
  end
end
local f = redis.call('HMGET', key, 'tat', 'until', 'wreset')
local last = math.max(tonumber(f[1]) or 0, tonumber(f[2]) or 0, tonumber(f[3]) or 0, now)
local ttl = math.ceil(math.min(last - now + window, 86400) * 1000) + 3600000
if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, string.format('%d', ttl)) end
return 1
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisRateLimiter:
    """Token buckets in Redis, shared by every process that uses the same Redis and ``prefix``.

    Same semantics as :class:`InProcessRateLimiter`; every step is one atomic Lua script (one round trip).

    Args:
        redis: a ``redis.asyncio.Redis`` client, or a URL (``redis://127.0.0.1:6379/0``) for a client
            this limiter owns and closes in :meth:`aclose`.
        prefix: prefix of the Redis keys (one hash per bucket key).
        clock: current time in epoch seconds; passed into the scripts (see "Time and clocks" above).
        sleep: how to wait.
        headroom: fraction of each budget kept unused; in ``(0, 1)``. Use the same value in every process.
        max_concurrency: most script calls in flight at once from this limiter; callers beyond it queue
            here, so a burst of acquirers never exhausts the client's connection pool (redis-py raises
            ``MaxConnectionsError`` past ``max_connections``, 100 by default, instead of waiting).
    """

    def __init__(
        self,
        redis: Redis | str,
        *,
        prefix: str = "connectors:rl:",
        clock: Clock = time.time,
        sleep: Sleep = anyio.sleep,
        headroom: float = 0.03,
        max_concurrency: int = 32,
    ) -> None:
        if max_concurrency < 1:
            raise ConfigurationError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if isinstance(redis, str):
            from redis.asyncio import Redis as _Redis

            self._redis: Redis = _Redis.from_url(redis)
            self._owned = True
        else:
            self._redis = redis
            self._owned = False
        self._prefix = prefix
        self._clock = clock
        self._sleep = sleep
        self._headroom = _check_headroom(headroom)
        self._acquire_script = self._redis.register_script(_ACQUIRE_LUA)
        self._update_script = self._redis.register_script(_UPDATE_LUA)
        self._gate = anyio.Semaphore(max_concurrency)

    @property
    def headroom(self) -> float:
        """The fraction of each budget kept unused."""
        return self._headroom

    def key_for(self, bucket: Bucket) -> str:
        """Return the Redis key holding ``bucket``'s state."""
        return self._prefix + bucket.key

    async def acquire(self, buckets: Sequence[Bucket], *, max_wait: float) -> float:
        """Take one token from each bucket, waiting as needed; see :meth:`RateLimiter.acquire`."""
        pending = _dedupe(buckets)
        if not pending:
            return 0.0
        now = self._clock()
        args: list[str | int] = [repr(float(now)), repr(min(float(max_wait), _FAR)), repr(self._headroom)]
        for b in pending:
            args += [b.limit, repr(float(b.window))]
        async with self._gate:
            result = await self._acquire_script(keys=[self.key_for(b) for b in pending], args=args)
        at = float(_text(result[1]))
        if int(result[0]) != 1:
            raise _too_long(pending, at, now, max_wait)
        if at <= now:
            return 0.0
        await self._sleep(at - now)
        return max(at, self._clock()) - now

    async def observe(
        self, bucket: Bucket, *, limit: int | None, remaining: int | None, reset_at: float | None
    ) -> None:
        """Feed back ``x-ratelimit-*`` headers; see :meth:`RateLimiter.observe`."""
        args = [
            "observe",
            repr(self._clock()),
            repr(float(bucket.window)),
            "" if limit is None else str(int(limit)),
            "" if remaining is None else str(int(remaining)),
            "" if reset_at is None else repr(float(reset_at)),
        ]
        async with self._gate:
            await self._update_script(keys=[self.key_for(bucket)], args=args)

    async def penalize(self, bucket: Bucket, *, until: float) -> None:
        """Block ``bucket`` until ``until``; see :meth:`RateLimiter.penalize`."""
        args = ["penalize", repr(self._clock()), repr(float(bucket.window)), repr(float(until))]
        async with self._gate:
            await self._update_script(keys=[self.key_for(bucket)], args=args)

    async def aclose(self) -> None:
        """Close the Redis client if this limiter created it from a URL."""
        if self._owned:
            await self._redis.aclose()
