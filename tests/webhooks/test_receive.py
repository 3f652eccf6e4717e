"""Receiving: signatures, envelopes, mapping, dedupe, stale updates, fan-out, handlers and streams."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from connectors import Connection, Connectors
from connectors.errors import ConfigurationError, WebhookPayloadError, WebhookSignatureError
from connectors.kustomer.sandbox import Sandbox
from connectors.kustomer.webhooks import sign
from unified_models import Contact, Engagement, Event, User, Workspace

from .conftest import RECEIVE_URL, Receiver, names

pytestmark = pytest.mark.anyio

NATIVE = [
    "genericContact::created",
    "genericContact::updated",
    "genericUser::created",
    "genericUser::updated",
    "genericWorkspace::created",
    "genericWorkspace::updated",
    "crmEngagement::created",
    "crmEngagement::updated",
]


def token_of(sb: Sandbox) -> str:
    (hook,) = sb.state.outbound_webhooks
    return str(hook.attrs["token"])


def headers_for(body: bytes, token: str, event: str | None = None) -> dict[str, str]:
    out = {"Content-Type": "application/json", "X-Kustomer-Webhook-Signature": sign(token, body)}
    if event:
        out["X-Kustomer-Webhook-Event"] = event
    return out


def envelope(sb: Sandbox, name: str, data: dict[str, Any], *, event_id: str = "evt1") -> bytes:
    org = sb.state.org.id
    return json.dumps(
        {"id": event_id, "name": name, "org": org, "partition": org, "data": data, "changes": None}
    ).encode()


async def test_every_native_event_arrives_once_as_a_unified_event(
    conn: Connection, wsb: Sandbox, events: list[Event], api: httpx.AsyncClient
) -> None:
    await conn.webhooks.subscribe(NATIVE, url=RECEIVE_URL)
    contact = await conn.resources("genericContact").create({"firstName": "Ann", "lastName": "Lee"})
    await conn.resources("genericContact").update(contact.id or "", {"firstName": "Anna"})
    user = (await api.post("/v1/users", json={"name": "Sam Roe", "email": "sam@example.com"})).json()["data"]
    await api.put(f"/v1/users/{user['id']}", json={"displayName": "Sammy"})
    team = await conn.resources("genericWorkspace").create({"name": "Tier 2"})
    await conn.resources("genericWorkspace").update(team.id or "", {"name": "Tier 3"})
    conv = (await api.post("/v1/conversations", json={"customer": contact.id, "name": "Refund"})).json()["data"]
    await api.patch(f"/v1/conversations/{conv['id']}", json={"name": "Refund please"})
    await wsb.drain()
    got = sorted(names(events))
    assert got == sorted(
        [
            ("genericContact::created", contact.id),
            ("genericContact::updated", contact.id),
            ("genericUser::created", user["id"]),
            ("genericUser::updated", user["id"]),
            ("genericWorkspace::created", team.id),
            ("genericWorkspace::updated", team.id),
            ("crmEngagement::created", conv["id"]),
            ("crmEngagement::updated", conv["id"]),
        ]
    )
    by_name = {e.name: e for e in events}
    assert isinstance(by_name["genericContact::updated"].data, Contact)
    assert by_name["genericContact::updated"].data.first_name == "Anna"
    assert isinstance(by_name["genericUser::updated"].data, User)
    assert by_name["genericUser::updated"].data.display_name == "Sammy"
    assert isinstance(by_name["genericWorkspace::updated"].data, Workspace)
    assert by_name["genericWorkspace::updated"].data.name == "Tier 3"
    assert isinstance(by_name["crmEngagement::updated"].data, Engagement)
    assert by_name["crmEngagement::updated"].data.title == "Refund please"
    for event in events:
        assert event.owner_id == "tenant-1" and event.connector_id == "kustomer" and event.source == "webhook"
        assert Event.model_validate(event.model_dump(mode="json")) == event
    assert len({e.idempotency_key for e in events}) == len(events)


async def test_duplicates_are_absorbed(conn: Connection, wsb: Sandbox, events: list[Event], whub: Connectors) -> None:
    wsb.settings.webhook_duplicate_rate = 1.0
    await conn.webhooks.subscribe(["genericContact::*"], url=RECEIVE_URL)
    contacts = conn.resources("genericContact")
    made = [await contacts.create({"firstName": f"C{i}"}) for i in range(3)]
    for c in made:
        await contacts.update(c.id or "", {"lastName": "Dup"})
    await wsb.drain()
    assert len(events) == 6
    assert sorted(names(events)) == sorted(
        [("genericContact::created", c.id) for c in made] + [("genericContact::updated", c.id) for c in made]
    )
    assert whub.webhooks.stats["duplicates"] == 6
    assert len(wsb.state.webhook_deliveries) == 12


async def test_reordered_updates_never_go_back_in_time(
    conn: Connection, wsb: Sandbox, events: list[Event], whub: Connectors
) -> None:
    wsb.settings.webhook_reorder = True
    wsb.settings.webhook_reorder_max_delay_seconds = 0.03
    await conn.webhooks.subscribe(["genericContact::updated"], url=RECEIVE_URL)
    contacts = conn.resources("genericContact")
    contact = await contacts.create({"firstName": "v0"})
    for i in range(1, 9):
        await contacts.update(contact.id or "", {"firstName": f"v{i}"})
    await wsb.drain()
    delivered = [int(e.data.first_name[1:]) for e in events if isinstance(e.data, Contact) and e.data.first_name]
    assert delivered == sorted(delivered) and len(set(delivered)) == len(delivered)
    assert len(delivered) + whub.webhooks.stats["stale"] == 8
    assert delivered[-1] == 8  # the newest state is never stale, whatever the order
    emitted = [e["id"] for e in wsb.state.webhook_events if e["name"] == "kustomer.customer.update"]
    arrived = [d.event_id for d in wsb.state.webhook_deliveries if d.event_id in emitted]
    assert arrived != emitted and sorted(arrived) == sorted(emitted)  # they really were reordered


async def test_an_older_update_is_stale(conn: Connection, wsb: Sandbox, whub: Connectors, events: list[Event]) -> None:
    await conn.webhooks.subscribe(["genericContact::updated"], url=RECEIVE_URL)
    contact = await conn.resources("genericContact").create({"firstName": "a"})
    await conn.resources("genericContact").update(contact.id or "", {"firstName": "b"})
    await conn.resources("genericContact").update(contact.id or "", {"firstName": "c"})
    await wsb.drain()
    first, second = [e for e in wsb.state.webhook_events if e["name"] == "kustomer.customer.update"]
    events.clear()
    token = token_of(wsb)
    # Replayed under new event ids, newest first: the older one is stale.
    for env, eid in ((second, "replay-2"), (first, "replay-1")):
        body = json.dumps({**env, "id": eid}).encode()
        result = await whub.webhooks.handle(body, headers_for(body, token))
        assert result.accepted
    assert [e.data.first_name for e in events if isinstance(e.data, Contact)] == ["c"]
    assert result.stale and result.events == []
    # A deletion is a tombstone: an update arriving after it is stale too.
    await conn.webhooks.subscribe(["genericContact::deleted"])
    await conn.resources("genericContact").delete(contact.id or "")
    assert names(await conn.webhooks.poll()) == [("genericContact::deleted", contact.id)]
    body = json.dumps({**second, "id": "replay-3"}).encode()
    assert (await whub.webhooks.handle(body, headers_for(body, token))).stale


async def test_forged_replayed_and_malformed_deliveries_are_rejected(
    conn: Connection, wsb: Sandbox, whub: Connectors, events: list[Event], receiver: Receiver
) -> None:
    await conn.webhooks.subscribe(["genericContact::*"], url=RECEIVE_URL)
    contact = await conn.resources("genericContact").create({"firstName": "Real"})
    await wsb.drain()
    assert names(events) == [("genericContact::created", contact.id)]
    real = wsb.state.webhook_events[-1]
    token = token_of(wsb)
    hub = whub.webhooks

    async def rejected(exc_type: type[Exception], body: bytes, headers: dict[str, str]) -> str:
        with pytest.raises(exc_type) as exc:
            await hub.handle(body, headers)
        return str(getattr(exc.value, "reason", ""))

    forged = json.dumps({**real, "id": "evt-forged", "data": {**real["data"], "id": "x" * 24}}).encode()
    assert await rejected(WebhookSignatureError, forged, headers_for(forged, "not-the-token")) == "bad_signature"
    replay = json.dumps({**real, "id": "evt-replay"}).encode()
    wrong = headers_for(replay, token) | {"X-Kustomer-Webhook-Signature": sign(token, b"other body")}
    assert await rejected(WebhookSignatureError, replay, wrong) == "bad_signature"
    assert await rejected(WebhookSignatureError, replay, {"Content-Type": "application/json"}) == "missing_signature"
    bad_format = {"X-Kustomer-Webhook-Signature": "sha1=abc"}
    assert await rejected(WebhookSignatureError, replay, bad_format) == "malformed_signature"
    other_org = json.dumps({**real, "id": "evt-org", "org": "f" * 24}).encode()
    assert await rejected(WebhookSignatureError, other_org, headers_for(other_org, token)) == "unknown_sender"
    for body, reason in (
        (b"not json", "not_json"),
        (b"[1, 2]", "not_object"),
        (json.dumps({k: v for k, v in real.items() if k != "id"}).encode(), "missing_id"),
        (json.dumps({**real, "org": 42}).encode(), "missing_org"),
    ):
        assert await rejected(WebhookPayloadError, body, headers_for(body, token)) == reason
    mismatch = headers_for(replay, token, event="kustomer.user.create")
    assert await rejected(WebhookPayloadError, replay, mismatch) == "event_mismatch"
    bad_data = json.dumps({**real, "id": "evt-bad", "data": {"id": 5}}).encode()
    assert await rejected(WebhookPayloadError, bad_data, headers_for(bad_data, token)) == "bad_data"
    hub.configure(max_body_bytes=100)
    assert await rejected(WebhookPayloadError, replay, headers_for(replay, token)) == "too_large"
    hub.configure(max_body_bytes=5 * 1024 * 1024)
    assert names(events) == [("genericContact::created", contact.id)]
    stats = hub.stats
    assert stats["rejected_signature"] == 5 and stats["rejected_payload"] == 7
    assert stats["accepted"] == 1 and stats["received"] == 13
    # The same checks over the receiver: 401 and 400, never a dispatch.
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver.app()), base_url="http://r") as c:
        assert (await c.post("/webhooks/kustomer", content=forged, headers=headers_for(forged, "x"))).status_code == 401
        assert (await c.post("/webhooks/kustomer", content=b"{", headers=headers_for(b"{", token))).status_code == 400
        ok = json.dumps({**real, "id": "evt-again"}).encode()
        assert (await c.post("/webhooks/kustomer", content=ok, headers=headers_for(ok, token))).status_code == 200
    assert len(events) == 2


async def test_unknown_events_are_accepted_and_ignored(conn: Connection, wsb: Sandbox, whub: Connectors) -> None:
    await conn.webhooks.subscribe(["genericContact::created"], url=RECEIVE_URL)
    body = envelope(wsb, "kustomer.tag.update", {"type": "tag", "id": "t1", "attributes": {"name": "vip"}})
    result = await whub.webhooks.handle(body, headers_for(body, token_of(wsb)))
    assert result.accepted and not result.duplicate and result.events == []


async def test_without_any_webhook_everything_is_unknown(whub: Connectors) -> None:
    with pytest.raises(WebhookSignatureError) as exc:
        await whub.webhooks.handle(b"{}", {"X-Kustomer-Webhook-Signature": "0" * 64})
    assert exc.value.reason == "unknown_sender"


async def test_one_delivery_fans_out_to_every_subscribed_owner(
    conn: Connection, conn2: Connection, wsb: Sandbox, events: list[Event], whub: Connectors
) -> None:
    third = await whub.connect("kustomer", "tenant-3", api_key=wsb.mint_api_key(name="t3"), base_url=wsb.base_url)
    await conn.webhooks.subscribe(["genericContact::updated"], url=RECEIVE_URL)
    await conn2.webhooks.subscribe(["genericContact::*"], url=RECEIVE_URL)
    await third.webhooks.subscribe(["genericContact::created"], url=RECEIVE_URL)
    contact = await conn.resources("genericContact").create({"firstName": "Fan"})
    await conn.resources("genericContact").update(contact.id or "", {"firstName": "Out"})
    await wsb.drain()
    got = sorted((e.owner_id or "", e.name) for e in events)
    assert got == [
        ("tenant-1", "genericContact::updated"),
        ("tenant-2", "genericContact::created"),
        ("tenant-2", "genericContact::updated"),
        ("tenant-3", "genericContact::created"),
    ]
    assert len(wsb.state.webhook_deliveries) == 2  # one webhook for the org, one delivery per event


async def test_message_events_are_opt_in(
    whub: Connectors, wsb: Sandbox, events: list[Event], api: httpx.AsyncClient
) -> None:
    plain = await whub.connect("kustomer", "plain", api_key=wsb.mint_api_key(name="p"), base_url=wsb.base_url)
    chatty = await whub.connect(
        "kustomer",
        "chatty",
        api_key=wsb.mint_api_key(name="c"),
        base_url=wsb.base_url,
        settings={"webhooks": {"message_events": True}},
    )
    await plain.webhooks.subscribe(["crmEngagement::updated"], url=RECEIVE_URL)
    await chatty.webhooks.subscribe(["crmEngagement::updated"], url=RECEIVE_URL)
    (hook,) = wsb.state.outbound_webhooks
    assert "kustomer.message.create" in hook.attrs["events"]
    customer = (await api.post("/v1/customers", json={"name": "Msg"})).json()["data"]
    conv = (await api.post("/v1/conversations", json={"customer": customer["id"]})).json()["data"]
    await wsb.drain()
    events.clear()
    await api.post(
        f"/v1/conversations/{conv['id']}/messages",
        json={"channel": "email", "direction": "in", "app": "test", "preview": "hello"},
    )
    await wsb.drain()
    from_messages = [e for e in events if e.idempotency_key.split(":")[-2] == "message"]
    assert [(e.owner_id, e.id, e.data) for e in from_messages] == [("chatty", conv["id"], None)]
    # The conversation's own update (its message counter) reaches both owners, with data.
    conv_updates = sorted(e.owner_id or "" for e in events if e not in from_messages)
    assert conv_updates == ["chatty", "plain"]


async def test_failing_handlers_are_retried_from_the_outbox(conn: Connection, wsb: Sandbox, whub: Connectors) -> None:
    now = [1_000_000.0]
    hub = whub.webhooks
    hub.clock = lambda: now[0]
    calls: list[str] = []

    @hub.on("genericContact::created")
    async def flaky(event: Event) -> None:
        calls.append(event.id)
        if len(calls) < 3:
            raise RuntimeError("downstream is down")

    await conn.webhooks.subscribe(["genericContact::created"], url=RECEIVE_URL)
    contact = await conn.resources("genericContact").create({"firstName": "Retry"})
    await wsb.drain()
    assert calls == [contact.id]
    assert await hub.deliver_pending() == 0  # not due yet
    now[0] += 0.011
    await hub.drain()
    now[0] += 0.021
    await hub.drain()
    assert calls == [contact.id] * 3
    assert whub.store.outbox_counts() == {"pending_local": 0, "pending_forward": 0, "dead": 0}
    assert hub.stats["handler_failures"] == 2 and hub.stats["dispatched"] == 1


async def test_handlers_give_up_after_max_attempts(conn: Connection, wsb: Sandbox, whub: Connectors) -> None:
    hub = whub.webhooks
    hub.configure(max_attempts=2, backoff_base=0.0)

    @hub.on("*")
    def always_fails(event: Event) -> None:
        raise ValueError("bad")

    await conn.webhooks.subscribe(["genericContact::created"], url=RECEIVE_URL)
    await conn.resources("genericContact").create({"firstName": "Dead"})
    await wsb.drain()
    await hub.drain()
    assert whub.store.outbox_counts()["dead"] == 1
    (dead,) = whub.store.list_outbox(status="dead")
    assert dead.attempts == 2 and "ValueError" in (dead.last_error or "")
    assert hub.off(always_fails) and not hub.off(always_fails)


async def test_streams_fan_out_per_owner_and_pattern(
    conn: Connection, conn2: Connection, wsb: Sandbox, whub: Connectors
) -> None:
    hub = whub.webhooks
    mine = hub.stream(owner_id="tenant-1", patterns=["genericContact::*"])
    everything = hub.stream()
    tiny = hub.stream(max_queue=1)
    await conn.webhooks.subscribe(["genericContact::*"], url=RECEIVE_URL)
    await conn2.webhooks.subscribe(["genericContact::created"], url=RECEIVE_URL)
    contact = await conn.resources("genericContact").create({"firstName": "Stream"})
    await conn.resources("genericContact").update(contact.id or "", {"firstName": "Streamed"})
    await wsb.drain()
    assert [(e.owner_id, e.name) for e in [await mine.get(1), await mine.get(1)]] == [
        ("tenant-1", "genericContact::created"),
        ("tenant-1", "genericContact::updated"),
    ]
    with pytest.raises(TimeoutError):
        await mine.get(0.05)
    got = [await everything.get(1) for _ in range(3)]
    assert sorted((e.owner_id or "", e.name) for e in got) == [
        ("tenant-1", "genericContact::created"),
        ("tenant-1", "genericContact::updated"),
        ("tenant-2", "genericContact::created"),
    ]
    assert tiny.dropped == 2 and hub.stats["stream_dropped"] == 2
    async with tiny:
        pass
    assert (await tiny.get(0.05)) in got  # the newest event was kept; closing keeps what is queued
    with pytest.raises(StopAsyncIteration):
        await tiny.get(0.05)
    await mine.aclose()
    await everything.aclose()


async def test_bad_patterns(whub: Connectors) -> None:
    for bad in ("genericContact", "genericContact::exploded", "::created", "a::b::c"):
        with pytest.raises(ConfigurationError):
            whub.webhooks.on(bad)
        with pytest.raises(ConfigurationError):
            whub.webhooks.stream(patterns=[bad])


async def test_concurrent_identical_deliveries_dispatch_once(
    conn: Connection, wsb: Sandbox, whub: Connectors, events: list[Event]
) -> None:
    await conn.webhooks.subscribe(["genericContact::created"], url=RECEIVE_URL)
    customer = wsb.customer_type.render(next(iter(wsb.state.customers.live.values())))
    body = envelope(wsb, "kustomer.customer.create", customer, event_id="evt-same")
    headers = headers_for(body, token_of(wsb))
    results = await asyncio.gather(*(whub.webhooks.handle(body, headers) for _ in range(5)))
    assert sorted(r.duplicate for r in results) == [False, True, True, True, True]
    assert len(events) == 1


async def test_rows_of_a_crashed_worker_are_delivered_after_their_lease(
    conn: Connection, wsb: Sandbox, whub: Connectors
) -> None:
    from connectors.runtime.store import EventCandidate, OutboxRow

    await conn.webhooks.subscribe(["genericContact::created"], url=RECEIVE_URL)
    contact = await conn.resources("genericContact").create({"firstName": "Orphan"})
    await wsb.drain()
    # Another worker committed this event with its lease, then died before delivering it.
    event = Event(
        model="genericContact",
        trigger="created",
        id=contact.id or "",
        idempotency_key="kustomer:evt-orphan",
        occurred_at="2026-01-01T00:00:00Z",
        owner_id="tenant-1",
    )
    row = OutboxRow(
        id="f" * 32, target="local", owner_id="tenant-1", payload=event.model_dump(mode="json"), available_at=0
    )
    whub.store.commit_events([EventCandidate(rows=(row,))], now=1_000.0, lease_seconds=60)
    got: list[Event] = []
    whub.webhooks.on("*")(got.append)
    whub.webhooks.clock = lambda: 1_030.0
    assert await whub.webhooks.deliver_pending() == 0  # still leased by the dead worker
    whub.webhooks.clock = lambda: 1_061.0
    await whub.webhooks.drain()
    assert [e.idempotency_key for e in got] == ["kustomer:evt-orphan"]
    await whub.webhooks.drain()
    assert whub.store.list_outbox() == []
