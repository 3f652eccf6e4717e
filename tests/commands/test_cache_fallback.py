"""Caching per cacheSeconds and every branch of Cache Fallback Mode, against a target whose status we flip."""

from __future__ import annotations

import pytest

from connectors.kustomer.commands import (
    CACHE_RETENTION_SECONDS,
    FALLBACK_PROBE_EVERY,
    CachedResponse,
    CacheKey,
    InMemoryCommandCache,
)

pytestmark = pytest.mark.anyio

CACHE_SECONDS = 60


@pytest.fixture
def runner(make_runner, acme_app):
    app = acme_app(
        permittedArgs=["region"],
        url="https://{{{region}}}.acme.test/orders",
        cacheSeconds=CACHE_SECONDS,
        auditLogging=True,
    )
    return make_runner(app)


@pytest.fixture
def run(runner):
    async def run(*, org_id="org-1", body=None, headers=None, region="eu"):
        return await runner.run(
            "acme.app.thing",
            org_id=org_id,
            body=body or {"q": 1},
            headers=headers or {},
            args={"region": region},
        )

    return run


async def activate(run, target, clock, *, status=503):
    """Cache a live value, let it go stale, then fail: the stale value is served and the mode is on."""
    target.status, target.body = 200, {"v": "cached"}
    await run()
    clock.advance(CACHE_SECONDS + 1)
    target.status, target.body = status, {"error": "down"}
    result = await run()
    assert (result.source, result.fallback_active, result.body) == ("fallback", True, {"v": "cached"})
    return result


async def test_no_cache_and_no_fallback_without_cache_seconds(make_runner, target, acme_app):
    runner = make_runner(acme_app())
    assert (await runner.run("acme.app.thing")).source == "live"
    assert (await runner.run("acme.app.thing")).source == "live"
    target.status = 503
    failed = await runner.run("acme.app.thing")
    assert (failed.ok, failed.fallback_active) == (False, False)
    target.status = 200
    assert (await runner.run("acme.app.thing")).source == "live"
    assert target.calls == 4
    assert repr(runner.cache) == "InMemoryCommandCache(responses=0, fallback_active=0)"


async def test_fresh_cache_hit(run, target, clock):
    first = await run()
    clock.advance(CACHE_SECONDS - 1)
    target.body = {"foo": "live-2"}
    second = await run()
    assert target.calls == 1
    assert (first.source, first.cache_age_seconds) == ("live", None)
    assert (second.source, second.cache_age_seconds, second.body) == (
        "cache",
        CACHE_SECONDS - 1,
        {"foo": "live-1"},
    )
    assert second.ok
    assert second.status == 200


async def test_cache_is_fresh_up_to_exactly_cache_seconds(run, target, clock):
    await run()
    clock.advance(CACHE_SECONDS)
    assert (await run()).source == "cache"
    clock.advance(0.001)
    assert (await run()).source == "live"
    assert target.calls == 2


async def test_stale_cache_fetches_live_and_refreshes(run, target, clock):
    await run()
    clock.advance(CACHE_SECONDS + 1)
    target.body = {"foo": "live-2"}
    stale = await run()
    assert (stale.source, stale.body) == ("live", {"foo": "live-2"})
    clock.advance(1)
    again = await run()
    assert (again.source, again.body, again.cache_age_seconds) == ("cache", {"foo": "live-2"}, 1)
    assert target.calls == 2


@pytest.mark.parametrize("status", [400, 401, 404, 429, 499])
async def test_4xx_activates_fallback_and_serves_the_stale_value(run, target, clock, runner, status):
    result = await activate(run, target, clock, status=status)
    assert result.status == 200
    assert result.cache_age_seconds == CACHE_SECONDS + 1
    assert result.ok
    entry = runner.audit.entries[-1]
    assert (entry.outcome, entry.status, entry.upstream_status, entry.source) == (
        "ok",
        200,
        status,
        "fallback",
    )


@pytest.mark.parametrize("status", [500, 502, 503, 504, 599])
async def test_5xx_activates_fallback_and_serves_the_stale_value(run, target, clock, status):
    result = await activate(run, target, clock, status=status)
    assert (result.status, result.error) == (200, None)


async def test_stale_value_served_while_active_and_probe_exactly_every_5th_run(run, target, clock):
    await activate(run, target, clock)
    calls = target.calls
    probes = []
    for index in range(1, 3 * FALLBACK_PROBE_EVERY + 1):
        clock.advance(1000)  # age does not matter while the mode is on
        before = target.calls
        result = await run()
        assert (result.source, result.body, result.fallback_active) == ("fallback", {"v": "cached"}, True)
        if target.calls > before:
            probes.append(index)
    assert probes == [5, 10, 15]
    assert target.calls == calls + 3


async def test_recovery_on_a_probe_deactivates_fallback(run, target, clock, runner):
    await activate(run, target, clock)
    for _ in range(FALLBACK_PROBE_EVERY - 1):
        assert (await run()).source == "fallback"
    target.status, target.body = 200, {"v": "fresh"}
    recovered = await run()
    assert (recovered.source, recovered.body, recovered.fallback_active) == ("live", {"v": "fresh"}, False)
    # Off again: the fresh value is a normal cache hit, a stale one fetches live.
    assert (await run()).source == "cache"
    clock.advance(CACHE_SECONDS + 1)
    assert (await run()).source == "live"
    assert [entry.source for entry in runner.audit.entries][-3:] == ["live", "cache", "live"]


async def test_failure_after_recovery_activates_again_with_a_new_count(run, target, clock):
    await activate(run, target, clock)
    for _ in range(FALLBACK_PROBE_EVERY - 1):
        await run()
    target.status = 200
    await run()  # probe: recovered
    clock.advance(CACHE_SECONDS + 1)
    target.status = 500
    assert (await run()).source == "fallback"  # activated again
    calls = target.calls
    for _ in range(FALLBACK_PROBE_EVERY - 1):
        await run()
    assert target.calls == calls
    await run()
    assert target.calls == calls + 1


async def test_fresh_value_is_served_without_a_probe_when_mode_is_on(run, target, clock, runner):
    await activate(run, target, clock)
    assert (await run()).cache_age_seconds == CACHE_SECONDS + 1  # the stale value, not re-fetched


async def test_fallback_is_keyed_per_org_command_url_headers_and_body(run, target, clock, runner):
    await activate(run, target, clock)
    variants = [
        {"org_id": "org-2"},
        {"region": "us"},
        {"body": {"q": 2}},
        {"headers": {"X-Trace": "1"}},
    ]
    for variant in variants:
        before = target.calls
        result = await run(**variant)
        assert target.calls == before + 1, variant  # its own key: nothing cached, the mode is off
        assert (result.source, result.ok, result.fallback_active) == ("live", False, True), variant
    # The original combination is still in fallback mode and serves its cached value.
    before = target.calls
    assert (await run()).source == "fallback"
    assert target.calls == before


async def test_header_values_and_name_case_in_the_key(run, target, clock):
    await run(headers={"X-Trace": "1"})
    assert (await run(headers={"x-trace": "1"})).source == "cache"
    assert (await run(headers={"X-Trace": "2"})).source == "live"


async def test_success_on_another_key_does_not_deactivate(run, target, clock):
    await activate(run, target, clock)
    target.status = 200
    assert (await run(region="us")).source == "live"
    assert (await run()).source == "fallback"


async def test_cached_values_expire_after_24_hours(run, target, clock):
    await run()
    clock.advance(CACHE_RETENTION_SECONDS - 1)
    target.status = 503
    almost = await run()
    assert (almost.source, almost.cache_age_seconds) == ("fallback", CACHE_RETENTION_SECONDS - 1)
    clock.advance(1)
    expired = await run()  # runs since activation: 1 (no probe), but the value is gone: call the target
    assert (expired.ok, expired.status, expired.source, expired.fallback_active) == (False, 503, "live", True)
    assert expired.error == "the command target answered 503"


async def test_expired_value_is_not_served_as_a_fresh_cache_hit_either(make_runner, target, clock, acme_app):
    runner = make_runner(acme_app(cacheSeconds=600))
    await runner.run("acme.app.thing")
    key = CacheKey.build(
        org_id="default", command="acme.app.thing", url="https://api.acme.test/things", headers={}, body=None
    )
    assert await runner.cache.get_response(key) is not None
    clock.advance(CACHE_RETENTION_SECONDS)
    assert (await runner.run("acme.app.thing")).source == "live"


async def test_failure_with_nothing_cached_activates_and_keeps_calling_the_target(run, target, clock):
    target.status = 500
    first = await run()
    assert (first.ok, first.source, first.fallback_active) == (False, "live", True)
    for _ in range(3):
        assert not (await run()).ok
    assert target.calls == 4  # nothing to serve: every run goes to the target
    target.status = 200
    recovered = await run()
    assert (recovered.ok, recovered.fallback_active) == (True, False)
    assert (await run()).source == "cache"


async def test_failed_probe_keeps_the_mode_and_serves_the_stale_value(run, target, clock):
    await activate(run, target, clock, status=429)
    for _ in range(FALLBACK_PROBE_EVERY):
        result = await run()
    assert (result.source, result.fallback_active) == ("fallback", True)
    assert target.calls == 3  # cache fill, activation, one failed probe


async def test_unreachable_target_counts_like_a_5xx(run, target, clock, runner):
    target.body = {"v": "cached"}
    await run()
    clock.advance(CACHE_SECONDS + 1)
    target.unreachable = True
    result = await run()
    assert (result.source, result.body, result.fallback_active) == ("fallback", {"v": "cached"}, True)
    entry = runner.audit.entries[-1]
    assert (entry.outcome, entry.upstream_status, entry.source) == ("ok", None, "fallback")


async def test_error_responses_are_never_cached(run, target, clock):
    target.status = 404
    await run()
    target.status = 200
    await run()
    assert target.calls == 2


async def test_cached_response_keeps_status_headers_and_output_schema(make_runner, target, clock, acme_app):
    schema = {"type": "object", "properties": {"n": {"type": "number"}}, "additionalProperties": False}
    runner = make_runner(acme_app(cacheSeconds=15, outputSchema=schema))
    target.status, target.body, target.headers = 201, {"n": "3", "x": 1}, {"ETag": '"v1"'}
    await runner.run("acme.app.thing")
    cached = await runner.run("acme.app.thing")
    assert (cached.source, cached.status, cached.body, cached.headers["etag"]) == (
        "cache",
        201,
        {"n": 3},
        '"v1"',
    )


async def test_cache_key_holds_a_digest_not_the_secret(secret):
    key = CacheKey.build(
        org_id="o",
        command="c",
        url="https://x.test/",
        headers={"Authorization": f"Bearer {secret}"},
        body=None,
    )
    assert secret not in repr(key)
    assert len(key.digest) == 64
    other = CacheKey.build(
        org_id="o",
        command="c",
        url="https://x.test/",
        headers={"authorization": f"Bearer {secret}"},
        body=None,
    )
    assert other == key


async def test_in_memory_cache_state_transitions():
    cache = InMemoryCommandCache()
    key = CacheKey(org_id="o", command="c", digest="d")
    assert await cache.count_fallback_run(key) is None
    state = await cache.activate_fallback(key, at=10.0, status=503)
    assert (state.active, state.runs, state.activated_at, state.last_status) == (True, 0, 10.0, 503)
    assert (await cache.count_fallback_run(key)).runs == 1
    again = await cache.activate_fallback(key, at=20.0, status=500)
    assert (again.runs, again.activated_at, again.last_status) == (1, 10.0, 500)  # count kept
    assert cache.fallback_state(key) == again
    await cache.deactivate_fallback(key)
    await cache.deactivate_fallback(key)
    assert await cache.count_fallback_run(key) is None
    await cache.set_response(key, CachedResponse(status=200, headers={}, body=None, stored_at=1.0))
    assert repr(cache) == "InMemoryCommandCache(responses=1, fallback_active=0)"
    await cache.delete_response(key)
    await cache.delete_response(key)
    assert await cache.get_response(key) is None
