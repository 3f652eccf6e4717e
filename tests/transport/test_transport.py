"""ResilientTransport: retry rules, backoff, 429 timing, the wait cap, stats, limiter integration.

Every test runs against an ``httpx.MockTransport`` with a fake clock and sleep: nothing sleeps for real.
"""

from __future__ import annotations

import email.utils
import logging
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.errors import RateLimitError
from connectors.runtime.ratelimit import Bucket, InProcessRateLimiter
from connectors.runtime.transport import (
    EXT_ATTEMPTS,
    EXT_BUCKETS,
    EXT_HEADERS_BUCKET,
    EXT_IDEMPOTENT,
    EXT_MAX_WAIT,
    EXT_WAITED,
    ResilientTransport,
    RetryPolicy,
    is_idempotent,
    reset_epoch,
    retry_after_epoch,
    server_retry_at,
)

NOW = 1_700_000_000.0
BASE = "https://acme.api.kustomerapp.com"
SECRET = "sk-live-very-secret-token"


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        assert delay >= 0
        self.sleeps.append(delay)
        self.now += delay
        await anyio.lowlevel.checkpoint()


Step = httpx.Response | Exception


class Script:
    """A MockTransport handler that plays a list of responses/exceptions, then repeats the last one."""

    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []
        self.bodies: list[bytes] = []
        self.responses: list[httpx.Response] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.bodies.append(request.read())
        step = self.steps[min(len(self.requests), len(self.steps)) - 1]
        if isinstance(step, Exception):
            raise step
        fresh = httpx.Response(step.status_code, headers=step.headers, content=step.content)
        self.responses.append(fresh)
        return fresh

    @property
    def calls(self) -> int:
        return len(self.requests)


def make(
    script: Script,
    *,
    policy: RetryPolicy | None = None,
    limiter: Callable[[Clock], Any] | None = None,
    seed: int = 7,
) -> tuple[httpx.AsyncClient, ResilientTransport, Clock]:
    """A client over ResilientTransport(MockTransport(script)); ``limiter`` is built on the same clock."""
    clock = Clock()
    transport = ResilientTransport(
        httpx.MockTransport(script),
        policy=policy or RetryPolicy(),
        limiter=limiter(clock) if limiter else None,
        clock=clock.time,
        sleep=clock.sleep,
        rng=random.Random(seed),
    )
    client = httpx.AsyncClient(transport=transport, base_url=BASE, headers={"Authorization": f"Bearer {SECRET}"})
    return client, transport, clock


def ok(body: str = "ok") -> httpx.Response:
    return httpx.Response(200, text=body)


def status(code: int, **headers: str) -> httpx.Response:
    return httpx.Response(code, headers=headers, json={"errors": [{"code": "x", "title": f"HTTP {code}"}]})


async def send(client: httpx.AsyncClient, method: str, path: str = "/v1/customers", **ext: Any) -> httpx.Response:
    return await client.request(
        method, path, json={"a": 1} if method in {"POST", "PUT", "PATCH"} else None, extensions=ext
    )


# --------------------------------------------------------------------------------------------------
# Which requests are retried on which statuses


@pytest.mark.anyio
@pytest.mark.parametrize("code", [500, 502, 503, 504, 429])
@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"])
async def test_idempotent_methods_retry_retry_statuses(method: str, code: int) -> None:
    script = Script(status(code), ok())
    client, _, _ = make(script)
    async with client:
        response = await send(client, method)
    assert response.status_code == 200
    assert script.calls == 2
    assert response.extensions[EXT_ATTEMPTS] == 2


@pytest.mark.anyio
@pytest.mark.parametrize("code", [500, 502, 503, 504])
@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_non_idempotent_requests_never_retry_5xx(method: str, code: int) -> None:
    script = Script(status(code), ok())
    client, _, clock = make(script)
    async with client:
        response = await send(client, method)
    assert response.status_code == code
    assert script.calls == 1
    assert clock.sleeps == []
    assert response.extensions[EXT_ATTEMPTS] == 1
    assert response.json()["errors"][0]["title"] == f"HTTP {code}"  # the returned response is readable


@pytest.mark.anyio
@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_requests_marked_idempotent_retry_5xx(method: str) -> None:
    script = Script(status(503), status(500), ok())
    client, _, _ = make(script)
    async with client:
        response = await send(client, method, **{EXT_IDEMPOTENT: True})
    assert response.status_code == 200
    assert script.calls == 3
    assert script.bodies == [b'{"a":1}'] * 3


@pytest.mark.anyio
async def test_get_marked_not_idempotent_is_not_retried() -> None:
    script = Script(status(503), ok())
    client, _, _ = make(script)
    async with client:
        response = await send(client, "GET", **{EXT_IDEMPOTENT: False})
    assert response.status_code == 503


@pytest.mark.anyio
@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_429_is_retried_for_any_method(method: str) -> None:
    script = Script(status(429, **{"retry-after": "2"}), ok())
    client, _, clock = make(script)
    async with client:
        response = await send(client, method)
    assert response.status_code == 200
    assert script.calls == 2
    assert clock.sleeps[0] >= 2


@pytest.mark.anyio
@pytest.mark.parametrize("code", [400, 401, 403, 404, 409, 413, 422, 501, 505])
async def test_other_statuses_are_returned_at_once(code: int) -> None:
    script = Script(status(code), ok())
    client, _, _ = make(script)
    async with client:
        response = await send(client, "GET")
    assert response.status_code == code
    assert script.calls == 1


@pytest.mark.anyio
async def test_retry_statuses_are_configurable() -> None:
    script = Script(status(503), status(409), ok())
    client, _, _ = make(script, policy=RetryPolicy(retry_statuses=frozenset({409})))
    async with client:
        response = await send(client, "GET")
    assert response.status_code == 503


def test_is_idempotent_defaults() -> None:
    for method in ("GET", "HEAD", "OPTIONS", "PUT", "DELETE"):
        assert is_idempotent(httpx.Request(method, BASE))
    for method in ("POST", "PATCH"):
        assert not is_idempotent(httpx.Request(method, BASE))
    assert is_idempotent(httpx.Request("POST", BASE, extensions={EXT_IDEMPOTENT: True}))


# --------------------------------------------------------------------------------------------------
# Connection errors


def _req() -> httpx.Request:
    return httpx.Request("GET", BASE)


NEVER_SENT = [httpx.ConnectError("refused"), httpx.ConnectTimeout("slow"), httpx.PoolTimeout("pool")]
MAYBE_SENT = [
    httpx.ReadError("reset"),
    httpx.ReadTimeout("slow"),
    httpx.WriteError("broken pipe"),
    httpx.WriteTimeout("slow"),
    httpx.RemoteProtocolError("server disconnected"),
    httpx.CloseError("close"),
]


@pytest.mark.anyio
@pytest.mark.parametrize("exc", NEVER_SENT + MAYBE_SENT, ids=lambda e: type(e).__name__)
async def test_idempotent_requests_retry_connection_errors(exc: Exception) -> None:
    script = Script(exc, ok())
    client, _, _ = make(script)
    async with client:
        response = await send(client, "GET")
    assert response.status_code == 200
    assert response.extensions[EXT_ATTEMPTS] == 2


@pytest.mark.anyio
@pytest.mark.parametrize("exc", NEVER_SENT, ids=lambda e: type(e).__name__)
async def test_post_retries_errors_where_nothing_was_sent(exc: Exception) -> None:
    script = Script(exc, ok())
    client, _, _ = make(script)
    async with client:
        response = await send(client, "POST")
    assert response.status_code == 200
    assert script.calls == 2


@pytest.mark.anyio
@pytest.mark.parametrize("exc", MAYBE_SENT, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_post_never_retries_errors_after_sending(exc: Exception, method: str) -> None:
    script = Script(exc, ok())
    client, _, clock = make(script)
    async with client:
        with pytest.raises(type(exc)):
            await send(client, method)
    assert script.calls == 1
    assert clock.sleeps == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    "exc", [httpx.UnsupportedProtocol("ftp"), httpx.LocalProtocolError("bad"), httpx.ProxyError("proxy")]
)
async def test_non_transient_errors_are_not_retried(exc: Exception) -> None:
    script = Script(exc, ok())
    client, _, _ = make(script)
    async with client:
        with pytest.raises(type(exc)):
            await send(client, "GET")
    assert script.calls == 1


@pytest.mark.anyio
async def test_retries_exhausted_reraises_the_last_exception() -> None:
    errors = [httpx.ConnectError(f"refused {i}") for i in range(5)]
    script = Script(*errors)
    client, _, clock = make(script, policy=RetryPolicy(max_retries=2))
    async with client:
        with pytest.raises(httpx.ConnectError) as info:
            await send(client, "GET")
    assert info.value is errors[2]
    assert script.calls == 3
    assert len(clock.sleeps) == 2


# --------------------------------------------------------------------------------------------------
# Backoff


@pytest.mark.anyio
async def test_backoff_grows_exponentially_up_to_the_cap_without_jitter() -> None:
    policy = RetryPolicy(max_retries=6, backoff_base=0.5, backoff_max=4.0, jitter=0.0, max_total_wait=1000)
    script = Script(status(503))
    client, _, clock = make(script, policy=policy)
    async with client:
        response = await send(client, "GET")
    assert response.status_code == 503
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert response.extensions[EXT_ATTEMPTS] == 7
    assert response.extensions[EXT_WAITED] == pytest.approx(15.5)


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    retry=st.integers(1, 40),
    base=st.floats(0.01, 5),
    cap=st.floats(0.1, 60),
    jitter=st.floats(0, 1),
)
def test_backoff_stays_within_jitter_bounds(seed: int, retry: int, base: float, cap: float, jitter: float) -> None:
    policy = RetryPolicy(backoff_base=base, backoff_max=cap, jitter=jitter)
    expected_cap = min(cap, base * 2 ** (retry - 1))
    delay = policy.backoff(retry, random.Random(seed))
    assert (1 - jitter) * expected_cap - 1e-9 <= delay <= expected_cap + 1e-9


def test_full_jitter_spreads_delays() -> None:
    policy = RetryPolicy()
    rng = random.Random(1)
    delays = [policy.backoff(3, rng) for _ in range(2000)]
    assert min(delays) < 0.1  # uniform over [0, 2]
    assert max(delays) > 1.9
    assert 0.9 < sum(delays) / len(delays) < 1.1


@pytest.mark.anyio
async def test_retry_after_on_5xx_lengthens_the_backoff() -> None:
    script = Script(status(503, **{"retry-after": "7"}), ok())
    client, _, clock = make(script)
    async with client:
        await send(client, "GET")
    assert clock.sleeps == [7.0]


# --------------------------------------------------------------------------------------------------
# 429 timing: x-ratelimit-reset (epoch or delay), Retry-After


def test_reset_epoch_detection() -> None:
    assert reset_epoch("1700000030", now=NOW) == 1_700_000_030  # epoch seconds
    assert reset_epoch("1700000030500", now=NOW) == pytest.approx(1_700_000_030.5)  # epoch milliseconds
    assert reset_epoch("30", now=NOW) == NOW + 30  # seconds to wait
    assert reset_epoch(" 2.5 ", now=NOW) == NOW + 2.5
    assert reset_epoch("0", now=NOW) == NOW
    assert reset_epoch(email.utils.formatdate(NOW + 40, usegmt=True), now=NOW) == NOW + 40
    for junk in ("", "soon", "-5", "nan", "inf"):
        assert reset_epoch(junk, now=NOW) is None


def test_retry_after_parsing() -> None:
    assert retry_after_epoch("120", now=NOW) == NOW + 120
    assert retry_after_epoch(email.utils.formatdate(NOW + 90, usegmt=True), now=NOW) == NOW + 90
    assert retry_after_epoch("Wed, 21 Oct 2015 07:28:00", now=NOW) == 1445412480  # no zone: GMT
    assert retry_after_epoch("later", now=NOW) is None
    assert retry_after_epoch("-1", now=NOW) is None


def test_server_retry_at_takes_the_latest_hint() -> None:
    headers = httpx.Headers({"retry-after": "5", "retry-after-ms": "9000", "x-ratelimit-reset": str(int(NOW + 7))})
    assert server_retry_at(headers, now=NOW) == NOW + 9
    assert server_retry_at(headers, now=NOW, include_reset=False) == NOW + 9
    assert server_retry_at(httpx.Headers({"x-ratelimit-reset": "20"}), now=NOW, include_reset=False) is None
    assert server_retry_at(httpx.Headers({}), now=NOW) is None


def _server_time(value: float) -> float:
    if value >= 1e12:
        return value / 1000
    if value >= 1e9:
        return value
    return NOW + value


@settings(max_examples=150, deadline=None)
@given(
    value=st.one_of(
        st.integers(0, 10**13),
        st.floats(0, 3e12, allow_nan=False),
        st.integers(1_699_999_000, 1_700_000_600),
        st.integers(1_699_999_000_000, 1_700_000_600_000),
    )
)
def test_429_wait_is_never_negative_nor_sooner_than_the_server_said(value: float) -> None:
    header = str(value)
    expected = max(_server_time(float(header)) - NOW, 0.0)

    async def main() -> tuple[list[float], RateLimitError | None]:
        script = Script(status(429, **{"x-ratelimit-reset": header}), ok())
        client, _, clock = make(script, policy=RetryPolicy(max_total_wait=600))
        async with client:
            try:
                await send(client, "POST")
            except RateLimitError as exc:
                return clock.sleeps, exc
        return clock.sleeps, None

    sleeps, error = anyio.run(main)
    assert all(s >= 0 for s in sleeps)
    if error is None:
        assert sleeps[0] >= expected - 1e-6
        assert expected <= 600
    else:
        assert sleeps == []
        assert error.retry_at is not None
        assert error.retry_at >= NOW + expected - 1e-6


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"x-ratelimit-reset": str(int(NOW) + 20)}, 20.0),  # epoch seconds
        ({"x-ratelimit-reset": str(int(NOW * 1000) + 12_000)}, 12.0),  # epoch milliseconds
        ({"x-ratelimit-reset": "15"}, 15.0),  # delay
        ({"retry-after": "8"}, 8.0),
        ({"retry-after": email.utils.formatdate(NOW + 25, usegmt=True)}, 25.0),
        ({"retry-after": "3", "x-ratelimit-reset": "11"}, 11.0),  # the later one wins
    ],
)
async def test_429_waits_for_the_server(headers: dict[str, str], wait: float) -> None:
    script = Script(status(429, **headers), ok())
    client, _, clock = make(script)
    async with client:
        response = await send(client, "GET")
    assert response.status_code == 200
    assert wait <= clock.sleeps[0] <= wait + RetryPolicy().backoff_base  # plus a little jitter
    assert response.extensions[EXT_WAITED] == pytest.approx(clock.sleeps[0])


@pytest.mark.anyio
async def test_429_without_hints_backs_off_at_least_the_base() -> None:
    script = Script(status(429), status(429), ok())
    client, _, clock = make(script, seed=3)
    async with client:
        await send(client, "GET")
    assert all(s >= RetryPolicy().backoff_base for s in clock.sleeps)
    assert len(clock.sleeps) == 2


# --------------------------------------------------------------------------------------------------
# The total-wait cap


@pytest.mark.anyio
async def test_429_beyond_the_wait_cap_raises_rate_limit_error_with_retry_at() -> None:
    reset = str(int(NOW) + 300)
    script = Script(
        httpx.Response(
            429,
            headers={
                "x-ratelimit-limit": "1000",
                "x-ratelimit-remaining": "0",
                "x-ratelimit-reset": reset,
                "set-cookie": "session=abc",
                "x-request-id": "req-123",
            },
            json={"errors": [{"code": "rate_limited", "title": "Too Many Requests"}]},
        )
    )
    client, _, clock = make(script)
    async with client:
        with pytest.raises(RateLimitError) as info:
            await send(client, "GET", "/v1/customers?email=someone@example.com")
    exc = info.value
    assert clock.sleeps == []  # gave up without waiting
    assert exc.retry_at == float(reset)
    assert exc.status_code == 429
    assert exc.error_code == "rate_limited"
    assert exc.detail == "Too Many Requests"
    assert exc.request_id == "req-123"
    assert exc.method == "GET"
    assert exc.url == f"{BASE}/v1/customers"
    assert exc.headers["x-ratelimit-remaining"] == "0"
    assert "set-cookie" not in exc.headers
    text = " ".join([str(exc), repr(exc), repr(exc.to_dict()), repr(exc.headers), repr(exc.body)])
    assert SECRET not in text
    assert "authorization" not in text.lower()
    assert "someone@example.com" not in text
    assert exc.to_dict()["retryAt"] == float(reset)


@pytest.mark.anyio
async def test_429_retries_exhausted_raises_rate_limit_error() -> None:
    script = Script(status(429, **{"retry-after": "1"}))
    client, _, clock = make(script, policy=RetryPolicy(max_retries=2))
    async with client:
        with pytest.raises(RateLimitError) as info:
            await send(client, "GET")
    assert script.calls == 3
    assert len(clock.sleeps) == 2
    assert info.value.retry_at == pytest.approx(clock.now + 1)


@pytest.mark.anyio
async def test_cap_counts_every_wait_of_the_request() -> None:
    # 3 x 4 s of Retry-After fit in a 10 s cap only twice.
    script = Script(status(429, **{"retry-after": "4"}))
    client, _, clock = make(script, policy=RetryPolicy(max_retries=10, max_total_wait=10, jitter=0.0))
    async with client:
        with pytest.raises(RateLimitError):
            await send(client, "GET")
    assert clock.sleeps == [4.0, 4.0]


@pytest.mark.anyio
async def test_5xx_beyond_the_cap_returns_the_last_response() -> None:
    script = Script(status(503, **{"retry-after": "50"}), ok())
    client, _, clock = make(script, policy=RetryPolicy(max_total_wait=30))
    async with client:
        response = await send(client, "GET")
    assert response.status_code == 503
    assert clock.sleeps == []
    assert response.json()["errors"][0]["title"] == "HTTP 503"


@pytest.mark.anyio
async def test_connection_error_beyond_the_cap_is_reraised() -> None:
    script = Script(httpx.ConnectError("down"), ok())
    client, _, _ = make(script, policy=RetryPolicy(max_total_wait=0))
    async with client:
        with pytest.raises(httpx.ConnectError):
            await send(client, "GET")


@pytest.mark.anyio
async def test_max_wait_extension_overrides_the_policy() -> None:
    for max_wait, expect_ok in ((60.0, True), (1.0, False)):
        script = Script(status(429, **{"retry-after": "20"}), ok())
        client, _, _ = make(script, policy=RetryPolicy(max_total_wait=5))
        async with client:
            if expect_ok:
                assert (await send(client, "GET", **{EXT_MAX_WAIT: max_wait})).status_code == 200
            else:
                with pytest.raises(RateLimitError):
                    await send(client, "GET", **{EXT_MAX_WAIT: max_wait})


# --------------------------------------------------------------------------------------------------
# Bodies, closing, stats, logging


@pytest.mark.anyio
async def test_discarded_responses_are_closed_and_the_returned_one_is_readable() -> None:
    script = Script(status(500), status(502), ok("final body"))
    client, _, _ = make(script)
    async with client:
        response = await send(client, "GET")
    assert response.text == "final body"
    assert all(r.is_closed for r in script.responses[:2])
    assert response.extensions[EXT_ATTEMPTS] == 3


@pytest.mark.anyio
async def test_streamed_response_is_passed_through_unread() -> None:
    script = Script(status(503), ok("x" * 10_000))
    client, _, _ = make(script)
    async with client, client.stream("GET", "/v1/export") as response:
        chunks = [chunk async for chunk in response.aiter_bytes()]
    assert b"".join(chunks) == b"x" * 10_000


@pytest.mark.anyio
async def test_streamed_request_body_is_replayed() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"part-1,"
        yield b"part-2"

    script = Script(status(503), ok())
    client, _, _ = make(script)
    async with client:
        response = await client.post("/v1/customers", content=body(), extensions={EXT_IDEMPOTENT: True})
    assert response.status_code == 200
    assert script.bodies == [b"part-1,part-2"] * 2


@pytest.mark.anyio
async def test_success_at_once_records_stats() -> None:
    client, _, _ = make(Script(ok()))
    async with client:
        response = await send(client, "GET")
    assert response.extensions[EXT_ATTEMPTS] == 1
    assert response.extensions[EXT_WAITED] == 0.0


@pytest.mark.anyio
async def test_logs_name_method_and_path_only(caplog: pytest.LogCaptureFixture) -> None:
    script = Script(status(503), httpx.ConnectError("x"), status(429, **{"retry-after": "1"}), ok())
    client, _, _ = make(script)
    caplog.set_level(logging.INFO, logger="connectors.runtime.transport")
    async with client:
        await send(client, "GET", "/v1/customers/email=jo@example.com?token=abc")
    assert len(caplog.records) == 3
    assert all("GET /v1/customers/email=jo@example.com" in r.getMessage() for r in caplog.records)
    assert SECRET not in caplog.text
    assert "token=abc" not in caplog.text
    assert "Bearer" not in caplog.text


@pytest.mark.anyio
async def test_aclose_closes_the_inner_transport() -> None:
    closed: list[bool] = []

    class Inner(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            return ok()

        async def aclose(self) -> None:
            closed.append(True)

    async with ResilientTransport(Inner()) as transport:
        assert transport.policy == RetryPolicy()
        assert transport.limiter is None
    assert closed == [True]


@pytest.mark.anyio
async def test_default_inner_transport_is_httpx() -> None:
    transport = ResilientTransport()
    assert isinstance(transport._inner, httpx.AsyncHTTPTransport)
    await transport.aclose()


def test_policy_validation() -> None:
    from connectors.errors import ConfigurationError

    for kwargs in ({"max_retries": -1}, {"backoff_base": -1}, {"jitter": 1.5}):
        with pytest.raises(ConfigurationError):
            RetryPolicy(**kwargs)
    assert RetryPolicy().retry_statuses == frozenset({429, 500, 502, 503, 504})


# --------------------------------------------------------------------------------------------------
# With a rate limiter


class SpyLimiter:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[tuple[Any, ...]] = []

    async def acquire(self, buckets: Any, *, max_wait: float) -> float:
        self.calls.append(("acquire", tuple(b.key for b in buckets), max_wait))
        return float(await self.inner.acquire(buckets, max_wait=max_wait))

    async def observe(self, bucket: Bucket, **kw: Any) -> None:
        self.calls.append(("observe", bucket.key, kw))
        await self.inner.observe(bucket, **kw)

    async def penalize(self, bucket: Bucket, *, until: float) -> None:
        self.calls.append(("penalize", bucket.key, until))
        await self.inner.penalize(bucket, until=until)


ORG = Bucket("kustomer:acme", 1000)
SEARCH = Bucket("kustomer:acme:search", 100)


def _limited(**kw: Any) -> dict[str, Any]:
    return {EXT_BUCKETS: [ORG], EXT_HEADERS_BUCKET: ORG, **kw}


def spy_on_limiter(box: list[SpyLimiter]) -> Callable[[Clock], SpyLimiter]:
    def build(clock: Clock) -> SpyLimiter:
        box.append(SpyLimiter(InProcessRateLimiter(clock=clock.time, sleep=clock.sleep)))
        return box[-1]

    return build


@pytest.mark.anyio
async def test_every_attempt_acquires_and_every_response_is_observed() -> None:
    headers = {"x-ratelimit-limit": "1000", "x-ratelimit-remaining": "990", "x-ratelimit-reset": "30"}
    script = Script(status(503, **headers), httpx.ConnectError("x"), httpx.Response(200, headers=headers))
    box: list[SpyLimiter] = []
    client, _, clock = make(script, limiter=spy_on_limiter(box))
    async with client:
        await send(client, "GET", **_limited())
    spy = box[0]
    assert [c[0] for c in spy.calls] == ["acquire", "observe", "acquire", "acquire", "observe"]
    assert spy.calls[1][2] == {"limit": 1000, "remaining": 990, "reset_at": NOW + 30}
    assert spy.calls[4][2] == {"limit": 1000, "remaining": 990, "reset_at": clock.now + 30}
    assert spy.calls[0][2] == RetryPolicy().max_total_wait


@pytest.mark.anyio
async def test_429_penalizes_the_headers_bucket() -> None:
    script = Script(status(429, **{"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 10)}), ok())
    box: list[SpyLimiter] = []
    client, _, clock = make(script, limiter=spy_on_limiter(box))
    async with client:
        response = await send(client, "POST", **_limited())
    assert response.status_code == 200
    assert ("penalize", ORG.key, NOW + 10) in box[0].calls
    assert clock.now >= NOW + 10  # the retry went after the reset


@pytest.mark.anyio
async def test_limiter_wait_counts_against_the_cap_and_is_reported() -> None:
    script = Script(ok())
    client, _, clock = make(script, limiter=lambda c: InProcessRateLimiter(clock=c.time, sleep=c.sleep))
    small = Bucket("small", 10, 60.0)  # one token per ~6.2 s
    async with client:
        first = await send(client, "GET", **{EXT_BUCKETS: [small]})
        second = await send(client, "GET", **{EXT_BUCKETS: [small]})
        with pytest.raises(RateLimitError) as info:
            await send(client, "GET", "/v1/customers?q=secret", **{EXT_BUCKETS: [small], EXT_MAX_WAIT: 1.0})
    assert first.extensions[EXT_WAITED] == 0.0
    assert second.extensions[EXT_WAITED] == pytest.approx(60 / 9.7)
    assert info.value.retry_at == pytest.approx(clock.now + 60 / 9.7)
    assert info.value.method == "GET"
    assert info.value.url == f"{BASE}/v1/customers"
    assert "secret" not in str(info.value)
    assert script.calls == 2  # the refused request was never sent


@pytest.mark.anyio
async def test_search_requests_spend_both_buckets() -> None:
    box: list[SpyLimiter] = []
    client, _, _ = make(Script(ok()), limiter=spy_on_limiter(box))
    async with client:
        await client.post(
            "/v1/customers/search",
            json={},
            extensions={EXT_BUCKETS: [ORG, SEARCH], EXT_HEADERS_BUCKET: SEARCH, EXT_IDEMPOTENT: True},
        )
    assert box[0].calls[0][:2] == ("acquire", (ORG.key, SEARCH.key))


@pytest.mark.anyio
async def test_bad_extensions_are_configuration_errors() -> None:
    from connectors.errors import ConfigurationError

    client, _, _ = make(Script(ok()), limiter=lambda c: InProcessRateLimiter(clock=c.time, sleep=c.sleep))
    async with client:
        with pytest.raises(ConfigurationError):
            await send(client, "GET", **{EXT_BUCKETS: ["org"]})
        with pytest.raises(ConfigurationError):
            await send(client, "GET", **{EXT_HEADERS_BUCKET: "org"})
        # A lone Bucket is accepted as a one-element sequence.
        assert (await send(client, "GET", **{EXT_BUCKETS: ORG})).status_code == 200


# --------------------------------------------------------------------------------------------------
# Throughput: the limiter must not serialise requests


@pytest.mark.anyio
async def test_concurrency_scales_throughput_within_the_budget(clocks: Any) -> None:
    """Concurrency 8 vs 1 at 100 ms latency, budget far above both: >= 5x the throughput."""

    async def run(concurrency: int) -> float:
        clock = clocks.virtual()

        async def handler(request: httpx.Request) -> httpx.Response:
            await clock.sleep(0.1)
            return httpx.Response(200, headers={"x-ratelimit-limit": "6000", "x-ratelimit-remaining": "5000"})

        limiter = InProcessRateLimiter(clock=clock.time, sleep=clock.sleep)
        transport = ResilientTransport(
            httpx.MockTransport(handler), limiter=limiter, clock=clock.time, sleep=clock.sleep
        )
        bucket = Bucket("org", 6000, 60.0)
        per_worker = 80 // concurrency
        start = clock.now
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:

            async def worker() -> None:
                for _ in range(per_worker):
                    r = await client.get("/x", extensions={EXT_BUCKETS: [bucket], EXT_HEADERS_BUCKET: bucket})
                    assert r.status_code == 200

            await clock.run(*[worker for _ in range(concurrency)])
        return per_worker * concurrency / (clock.now - start)

    one, eight = await run(1), await run(8)
    assert one == pytest.approx(10.0, rel=0.01)
    assert eight >= 5 * one
