"""Webhooks: fuzzed deliveries into the receiver, two workers subscribing at once, concurrent pollers.

* **Receiver fuzz.** A real signed delivery from the sandbox is the seed. Forged deliveries (the body changed
  under the original signature, signatures and headers mangled, random bytes) are refused with
  ``WebhookSignatureError``/``WebhookPayloadError`` and never dispatched. Deliveries correctly signed with the
  webhook's token but carrying a mutated envelope are either accepted (and every event they dispatch is a
  valid, serialisable unified event) or refused with ``WebhookPayloadError``; nothing else escapes.
* **Subscribe race.** Several workers (hubs on one store) subscribe the same org at the same time: Kustomer ends
  with ONE webhook carrying every event, not one per worker.
* **Concurrent pollers.** Several workers poll the same virtual webhooks at once while data changes: every
  change is emitted exactly once.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import os
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import httpx
import pytest
from _reliability import Tally, fuzz, hub_settings, json_of, mutations, quiet_settings, scalars
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors import Connection, Connectors
from connectors.errors import WebhookPayloadError, WebhookSignatureError
from connectors.kustomer.sandbox import Sandbox
from connectors.runtime.store import ConnectionStore
from unified_models import Event

pytestmark = [pytest.mark.reliability, pytest.mark.anyio]

RECEIVE_URL = "https://app.example.com/webhooks/kustomer"
FIXED_TIME = 1_800_000_000.0
SIGNATURE = "X-Kustomer-Webhook-Signature"
EVENT = "X-Kustomer-Webhook-Event"


@dataclass
class Receiver:
    """The host app's receive route, in process: records what Kustomer sent and hands it to a hub."""

    hubs: list[Connectors] = field(default_factory=list)
    deliveries: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        self.deliveries.append((body, dict(request.headers)))
        hub = self.hubs[len(self.deliveries) % len(self.hubs)]  # deliveries land on any worker
        try:
            await hub.webhooks.handle(body, request.headers)
        except (WebhookSignatureError, WebhookPayloadError) as exc:
            self.statuses[400] += 1
            return JSONResponse(exc.to_dict(), status_code=400)
        self.statuses[200] += 1
        return JSONResponse({"ok": True})

    def transport(self) -> httpx.AsyncBaseTransport:
        return httpx.ASGITransport(app=Starlette(routes=[Route("/webhooks/kustomer", self.endpoint, methods=["POST"])]))


def _sign(token: str, body: bytes) -> str:
    return hmac.new(token.encode(), body, hashlib.sha256).hexdigest()


def _token(sb: Sandbox) -> str:
    (hook,) = list(sb.state.outbound_webhooks)
    return str(hook.attrs["token"])


# -- receiver fuzz --------------------------------------------------------------------------------------------------


@st.composite
def byte_edits(draw: st.DrawFn, body: bytes) -> bytes:
    """The body with a few bytes flipped, inserted or removed."""
    data = bytearray(body)
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        kind = draw(st.sampled_from(["flip", "insert", "delete"]))
        if kind == "flip" and data:
            data[position] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=4))
        elif data:
            del data[position]
    return bytes(data)


# What a signed Kustomer body may carry besides odd JSON: unpaired surrogates (a truncated emoji, "\ud83d").
signed_values = json_of(scalars | st.sampled_from(["\ud83d", "x\udc00y"]))
header_names = st.sampled_from([SIGNATURE, SIGNATURE.lower(), SIGNATURE.upper(), EVENT, "Content-Type", "X-Other"])
header_values = st.text(max_size=80) | st.from_regex(r"(sha256=)?[0-9a-fA-F]{62,66}", fullmatch=True)


async def test_fuzzed_webhook_deliveries_are_verified_and_never_dispatched_when_forged(
    make_hub: Callable[..., Connectors], connect_key: Callable[..., Any], tally: Tally
) -> None:
    receiver = Receiver()
    # a fixed clock: the seed delivery (its timestamps) is the same on every run, so are the examples
    sb = Sandbox(quiet_settings(customers=3), webhook_transport=receiver.transport(), clock=lambda: FIXED_TIME)
    hub = make_hub(sb.transport())
    receiver.hubs.append(hub)
    dispatched: list[Event] = []
    hub.webhooks.on("*")(dispatched.append)
    conn = await connect_key(hub, sb, owner="tenant-hooks")
    await conn.webhooks.subscribe(["genericContact::*", "genericCompany::*"], url=RECEIVE_URL)
    await conn.resources("genericContact").create(
        {"firstName": "Hook", "lastName": "Seed", "email": "seed@example.com"}
    )
    await sb.drain()
    assert receiver.statuses == Counter({200: 1}) and len(dispatched) == 1
    body, headers = receiver.deliveries[0]
    token = _token(sb)
    envelope = json.loads(body)
    serial = itertools.count()
    counts: Counter[str] = Counter()
    problems: list[str] = []

    async def deliver(raw: bytes, sent_headers: dict[str, str], forged: bool) -> None:
        before = len(dispatched)
        try:
            result = await hub.webhooks.handle(raw, sent_headers)
        except (WebhookSignatureError, WebhookPayloadError) as exc:
            counts["refused"] += 1
            counts[exc.reason] += 1
            if len(dispatched) != before:
                problems.append(f"refused but dispatched: {exc.reason}")
            return
        if forged and (raw != body or result.events or len(dispatched) != before):
            problems.append(f"forged delivery accepted: {raw[:80]!r}")
            return
        counts["accepted"] += 1
        for event in dispatched[before:]:
            event.model_dump_json()  # what forwarding and the event stream do with it

    @fuzz(700, shrink=False)
    @given(mutated=byte_edits(body), extra=st.dictionaries(header_names, header_values, max_size=3))
    def forged_bodies(mutated: bytes, extra: dict[str, str]) -> None:
        anyio.from_thread.run(deliver, mutated, {**headers, **extra}, True)

    @fuzz(500, shrink=False)
    @given(sent=st.dictionaries(header_names, header_values, max_size=4), raw=st.binary(max_size=200) | st.just(body))
    def forged_headers(sent: dict[str, str], raw: bytes) -> None:
        anyio.from_thread.run(deliver, raw, sent, True)

    @fuzz(1000, shrink=False)
    @given(doc=mutations(envelope, signed_values), keep_id=st.booleans(), header=st.booleans())
    def signed_garbage(doc: Any, keep_id: bool, header: bool) -> None:
        if isinstance(doc, dict) and not keep_id:
            doc["id"] = f"fuzz-{next(serial)}"  # a new event, not a duplicate of the seed
        raw = json.dumps(doc).encode()
        sent = {SIGNATURE: _sign(token, raw)}
        if header and isinstance(doc, dict):
            sent[EVENT] = str(doc.get("name"))
        anyio.from_thread.run(deliver, raw, sent, False)

    for check in (forged_bodies, forged_headers, signed_garbage):
        await anyio.to_thread.run_sync(check)
    tried = 700 + 500 + 1000
    tally.record("webhook deliveries", tried=tried, rejected=counts["refused"], lost=len(problems))
    reasons = {k: v for k, v in counts.items() if k not in ("refused", "accepted")}
    tally.note(
        f"webhook receiver fuzz: {tried} deliveries, {counts['accepted']} accepted (signed), {counts['refused']} "
        f"refused {dict(sorted(reasons.items()))}, {len(dispatched) - 1} events dispatched"
    )
    assert problems == [], problems[:5]
    assert counts["accepted"] > 0 and counts["bad_signature"] > 0 and counts["missing_signature"] > 0


# -- two workers subscribing at once --------------------------------------------------------------------------------


@dataclass
class Workers:
    """``n`` hubs (workers of one deployment) on one SQLite file store, and the sandbox they talk to."""

    sb: Sandbox
    receiver: Receiver
    hubs: list[Connectors]
    conns: list[Connection]


@pytest.fixture
async def workers(tmp_path: Path, make_store: Callable[..., ConnectionStore]) -> AsyncIterator[Callable[..., Any]]:
    made: list[Connectors] = []

    async def make(n: int, **settings: Any) -> Workers:
        receiver = Receiver()
        sb = Sandbox(quiet_settings(**settings), webhook_transport=receiver.transport())
        key = os.urandom(32)
        url = f"sqlite:///{tmp_path / f'workers-{len(made)}.db'}"
        hubs = [
            Connectors(settings=hub_settings(), store=make_store(url, key), transport=sb.transport()) for _ in range(n)
        ]
        made.extend(hubs)
        for hub in hubs:
            hub.webhooks.configure(lock_wait=10.0, backoff_base=0.01, cache_ttl=0.0)
        receiver.hubs.extend(hubs)
        first = await hubs[0].connect("kustomer", "tenant-w", api_key=sb.mint_api_key(name="w"), base_url=sb.base_url)
        conns = [first] + [await hub.get_by_id(first.id) for hub in hubs[1:]]
        return Workers(sb, receiver, hubs, conns)

    yield make
    for hub in made:
        await hub.aclose()


async def test_workers_subscribing_at_once_end_with_one_kustomer_webhook(
    workers: Callable[..., Any], tally: Tally
) -> None:
    w: Workers = await workers(4, customers=3)
    wanted = ["genericContact::created", "genericContact::updated", "genericCompany::created", "genericWorkspace::*"]

    async def subscribe(conn: Connection, events: list[str]) -> None:
        await conn.webhooks.subscribe(events, url=RECEIVE_URL)

    async with anyio.create_task_group() as tg:
        for index, conn in enumerate(w.conns):
            tg.start_soon(subscribe, conn, wanted[index:] + wanted[:index])  # same events, different orders
    hooks = list(w.sb.state.outbound_webhooks)
    subscribed = {s.event for s in await w.conns[0].webhooks.list()}
    # and the one webhook works: a change is delivered and dispatched once
    seen: list[Event] = []
    for hub in w.hubs:
        hub.webhooks.on("genericContact::created")(seen.append)
    await w.conns[1].resources("genericContact").create({"firstName": "One", "email": "one@example.com"})
    await w.sb.drain()
    tally.races += len(w.conns)
    tally.record("webhook subscribe race", tried=len(w.conns), lost=len(hooks) - 1 + abs(len(seen) - 1))
    tally.note(f"subscribe race: {len(w.conns)} workers at once -> {len(hooks)} Kustomer webhook(s)")
    assert len(hooks) == 1, [h.attrs for h in hooks]
    assert {"genericContact::created", "genericContact::updated", "genericCompany::created"} <= subscribed
    assert [e.name for e in seen] == ["genericContact::created"]


# -- concurrent pollers ---------------------------------------------------------------------------------------------


async def test_concurrent_pollers_emit_every_change_exactly_once(workers: Callable[..., Any], tally: Tally) -> None:
    w: Workers = await workers(3, customers=2, companies=2, company_delete_supported=True)
    # companies are virtual (polled): Kustomer has no company webhooks
    await w.conns[0].webhooks.subscribe(["genericCompany::*"], url=RECEIVE_URL)
    seen: list[Event] = []
    for hub in w.hubs:
        hub.webhooks.on("genericCompany::*")(seen.append)
    companies = w.conns[0].resources("genericCompany")
    expected: list[tuple[str, str]] = []

    async def poll_everywhere() -> None:
        async with anyio.create_task_group() as tg:
            for hub in w.hubs:
                for _ in range(2):
                    tg.start_soon(hub.webhooks.poll_once)

    for round_ in range(5):
        created = await companies.create({"name": f"Poll {round_}"})
        expected.append(("genericCompany::created", str(created.id)))
        await poll_everywhere()
        await companies.update(str(created.id), {"name": f"Poll {round_} renamed"})
        expected.append(("genericCompany::updated", str(created.id)))
        await poll_everywhere()
    for hub in w.hubs:
        await hub.webhooks.drain()
    got = Counter((e.name, str(e.id)) for e in seen)
    duplicated = sum(n - 1 for n in got.values() if n > 1)
    missing = sum(1 for key in expected if got[key] == 0)
    unexpected = sum(n for key, n in got.items() if key not in expected)
    tally.races += 10 * len(w.hubs) * 2
    tally.record("concurrent pollers", tried=len(expected), lost=duplicated + missing + unexpected)
    tally.note(
        f"pollers: {len(w.hubs)} workers x 2 pollers x 10 rounds, {len(seen)} events for {len(expected)} changes, "
        f"{duplicated} duplicated, {missing} missing"
    )
    assert (duplicated, missing, unexpected) == (0, 0, 0), got
