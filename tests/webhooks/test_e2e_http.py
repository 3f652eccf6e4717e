"""End to end over real HTTP: the sandbox (uvicorn thread) delivers signed webhooks to a receiver (uvicorn).

At-least-once delivery with duplicates and reordering switched on; forged and malformed deliveries over the
wire; virtual events for companies, CRM KObjects and deletions from the background poller, across a restart.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from connectors import Connectors
from connectors.kustomer.provision import provision_crm
from connectors.kustomer.sandbox import Sandbox, running_sandbox
from connectors.kustomer.webhooks import sign
from connectors.runtime.secrets import SecretBox
from connectors.runtime.store import ConnectionStore
from unified_models import Contact, Event

from .conftest import FAST, Receiver, sandbox_settings

pytestmark = [pytest.mark.anyio, pytest.mark.http]

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


@pytest.fixture
def served() -> Iterator[tuple[Sandbox, str]]:
    settings = sandbox_settings(
        webhook_duplicate_rate=0.4, webhook_reorder=True, webhook_reorder_max_delay_seconds=0.05
    )
    with running_sandbox(settings) as (sb, base_url):
        yield sb, base_url


@pytest.fixture
async def receiver_url(receiver: Receiver) -> AsyncIterator[str]:
    """The receiver app served by uvicorn on this test's event loop (so it shares the hub)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(receiver.app(), log_level="warning", lifespan="off", http="h11", ws="none"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{port}/webhooks/kustomer"
    server.should_exit = True
    await task
    sock.close()


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'connectors.db'}"


@pytest.fixture
def key() -> bytes:
    return os.urandom(32)


def make_hub(store_url: str, key: bytes) -> Connectors:
    return Connectors(settings=FAST, store=ConnectionStore(store_url, secret_box=SecretBox(key)))


async def test_native_events_arrive_once_over_http(
    served: tuple[Sandbox, str], receiver: Receiver, receiver_url: str, store_url: str, key: bytes
) -> None:
    sb, base_url = served
    hub = make_hub(store_url, key)
    receiver.hub = hub
    got: list[Event] = []
    hub.webhooks.on("*")(got.append)
    try:
        conn = await hub.connect("kustomer", "tenant-1", api_key=sb.mint_api_key(), base_url=base_url)
        await conn.webhooks.subscribe(NATIVE, url=receiver_url)
        contacts = conn.resources("genericContact")
        people = [await contacts.create({"firstName": f"Person {i}"}) for i in range(4)]
        for round_ in range(3):
            for person in people:
                await contacts.update(person.id or "", {"lastName": f"v{round_}"})
        team = await conn.resources("genericWorkspace").create({"name": "Escalations"})
        await conn.resources("genericWorkspace").update(team.id or "", {"name": "Escalations EU"})
        async with httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {sb.mint_api_key()}"}
        ) as api:
            user = (await api.post("/v1/users", json={"name": "Ops", "email": "ops@example.com"})).json()["data"]
            await api.put(f"/v1/users/{user['id']}", json={"displayName": "Ops team"})
            conv = (await api.post("/v1/conversations", json={"customer": people[0].id})).json()["data"]
            await api.patch(f"/v1/conversations/{conv['id']}", json={"name": "Urgent"})
        await sb.drain()
        await asyncio.sleep(0)
        delivered = len([d for d in sb.state.webhook_deliveries if d.ok])
        emitted = len(sb.state.webhook_events)
        assert delivered > emitted  # duplicates were really sent...
        assert hub.webhooks.stats["duplicates"] == delivered - emitted  # ...and absorbed
        # Every creation arrives exactly once.
        created = sorted((e.name, e.id) for e in got if e.trigger == "created")
        assert created == sorted(
            [("genericContact::created", p.id) for p in people]
            + [
                ("genericWorkspace::created", team.id),
                ("genericUser::created", user["id"]),
                ("crmEngagement::created", conv["id"]),
            ]
        )
        # Updates: never twice, never older after newer, and the latest state always arrives.
        keys = [e.idempotency_key for e in got]
        assert len(keys) == len(set(keys))
        for person in people:
            versions = [
                e.data.last_name for e in got if e.id == person.id and isinstance(e.data, Contact) and e.data.last_name
            ]
            assert versions == sorted(versions) and versions[-1] == "v2"
        updated = {e.id for e in got if e.trigger == "updated"}
        assert {team.id, user["id"], conv["id"]} <= updated
        assert hub.webhooks.stats["accepted"] + hub.webhooks.stats["duplicates"] == delivered
        assert set(receiver.statuses) == {200}

        # Forged, replayed with a wrong signature, and malformed deliveries over the wire.
        oldest_update = next(e for e in sb.state.webhook_events if e["name"] == "kustomer.customer.update")
        real = json.dumps({**oldest_update, "id": "evt-over-http"}).encode()
        token = str(next(iter(sb.state.outbound_webhooks)).attrs["token"])
        async with httpx.AsyncClient() as http:
            forged = await http.post(
                receiver_url, content=real, headers={"X-Kustomer-Webhook-Signature": sign("x", real)}
            )
            wrong = await http.post(
                receiver_url, content=real, headers={"X-Kustomer-Webhook-Signature": sign(token, real + b" ")}
            )
            unsigned = await http.post(receiver_url, content=real)
            broken = await http.post(
                receiver_url, content=b"{oops", headers={"X-Kustomer-Webhook-Signature": sign(token, b"{oops")}
            )
            good = await http.post(
                receiver_url, content=real, headers={"X-Kustomer-Webhook-Signature": sign(token, real)}
            )
        assert [forged.status_code, wrong.status_code, unsigned.status_code, broken.status_code] == [401, 401, 401, 400]
        assert forged.json()["reason"] == "bad_signature" and broken.json()["reason"] == "not_json"
        assert good.status_code == 200 and good.json()["stale"] is True  # an old update, replayed under a new id
    finally:
        await hub.aclose()
        hub.store.close()


async def test_virtual_events_within_a_poll_interval_across_a_restart(
    served: tuple[Sandbox, str], store_url: str, key: bytes
) -> None:
    sb, base_url = served
    interval = 0.05
    first = make_hub(store_url, key)
    arrived: asyncio.Queue[Event] = asyncio.Queue()
    first.webhooks.on("*")(arrived.put_nowait)

    async def expect(count: int) -> list[tuple[str, str]]:
        out = [await asyncio.wait_for(arrived.get(), 20) for _ in range(count)]
        await asyncio.sleep(interval * 3)
        assert arrived.empty(), "an event arrived twice"
        return sorted((e.name, e.id) for e in out)

    conn = await first.connect("kustomer", "tenant-1", api_key=sb.mint_api_key(), base_url=base_url)
    await provision_crm(conn)
    await conn.webhooks.subscribe(["genericCompany::*", "crmOpportunity::*", "crmStage::*", "genericContact::deleted"])
    await first.webhooks.start_polling(interval=interval)
    company = await conn.resources("genericCompany").create({"name": "Initech"})
    stage = await conn.resources("crmStage").create({"name": "Qualify", "type": "open"})
    assert await expect(2) == sorted([("genericCompany::created", company.id), ("crmStage::created", stage.id)])
    await first.aclose()
    first.store.close()

    # Changes while no poller runs.
    second = make_hub(store_url, key)
    second.webhooks.on("*")(arrived.put_nowait)
    conn = await second.get("kustomer", "tenant-1")
    opp = await conn.resources("crmOpportunity").create({"name": "Initech deal", "stage": stage.as_ref()})
    await conn.resources("genericCompany").update(company.id or "", {"name": "Initech Inc"})
    await conn.resources("crmStage").delete(stage.id or "")
    victim = (await conn.resources("genericContact").list(limit=1)).data[0]
    await conn.resources("genericContact").delete(victim.id or "")
    await second.webhooks.start_polling(interval=interval)
    try:
        assert await expect(4) == sorted(
            [
                ("crmOpportunity::created", opp.id),
                ("genericCompany::updated", company.id),
                ("crmStage::deleted", stage.id),
                ("genericContact::deleted", victim.id),
            ]
        )
    finally:
        await second.aclose()
        second.store.close()
