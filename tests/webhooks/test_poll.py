"""Virtual webhooks: companies, CRM KObjects, notes, users/teams and deletions, polled with a stored watermark."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from connectors import Connection, Connectors
from connectors.kustomer.provision import provision_crm
from connectors.kustomer.sandbox import Sandbox
from connectors.runtime.secrets import SecretBox
from connectors.runtime.store import ConnectionStore
from unified_models import Company, Event, Opportunity

from .conftest import FAST, RECEIVE_URL, names

pytestmark = pytest.mark.anyio


async def test_nothing_before_the_subscription_is_emitted(conn: Connection) -> None:
    await conn.webhooks.subscribe(["genericCompany::*", "genericContact::deleted", "crmEngagement::deleted"])
    assert await conn.webhooks.poll() == []
    assert await conn.webhooks.poll() == []


async def test_company_events(conn: Connection, api: httpx.AsyncClient, events: list[Event]) -> None:
    await conn.webhooks.subscribe(["genericCompany::*"], url=RECEIVE_URL)
    companies = conn.resources("genericCompany")
    acme = await companies.create({"name": "Acme"})
    polled = await conn.webhooks.poll()
    assert names(polled) == [("genericCompany::created", acme.id)]
    assert isinstance(polled[0].data, Company) and polled[0].data.name == "Acme"
    assert polled[0].source == "poll" and polled[0].owner_id == "tenant-1"
    await companies.update(acme.id or "", {"name": "Acme Corp"})
    globex = await companies.create({"name": "Globex"})
    polled = await conn.webhooks.poll()
    assert names(polled) == [("genericCompany::updated", acme.id), ("genericCompany::created", globex.id)]
    assert (await api.delete(f"/v1/companies/{acme.id}")).status_code == 204
    assert names(await conn.webhooks.poll()) == [("genericCompany::deleted", acme.id)]
    assert await conn.webhooks.poll() == []
    assert len(events) == 4  # the handlers saw exactly the polled events


async def test_crm_models(conn: Connection, events: list[Event]) -> None:
    await provision_crm(conn)
    await conn.webhooks.subscribe(["crmOpportunity::*", "crmPipeline::*", "crmStage::*"], url=RECEIVE_URL)
    stage = await conn.resources("crmStage").create({"name": "Discovery", "type": "open", "order": 0})
    pipeline = await conn.resources("crmPipeline").create({"name": "New", "stages": [stage.as_ref()]})
    opp = await conn.resources("crmOpportunity").create(
        {"name": "Deal", "amount": 10, "currency": "usd", "status": "open", "stage": stage.as_ref()}
    )
    first = await conn.webhooks.poll()
    assert sorted(names(first)) == sorted(
        [
            ("crmStage::created", stage.id),
            ("crmPipeline::created", pipeline.id),
            ("crmOpportunity::created", opp.id),
        ]
    )
    await conn.resources("crmOpportunity").update(opp.id or "", {"status": "won"})
    await conn.resources("crmStage").delete(stage.id or "")
    second = await conn.webhooks.poll()
    assert sorted(names(second)) == sorted([("crmOpportunity::updated", opp.id), ("crmStage::deleted", stage.id)])
    won = next(e for e in second if e.name == "crmOpportunity::updated")
    assert isinstance(won.data, Opportunity) and won.data.status == "won"
    deleted = next(e for e in second if e.trigger == "deleted")
    assert deleted.data is None
    assert await conn.webhooks.poll() == []


async def test_contact_deletions_and_engagement_notes(
    conn: Connection, api: httpx.AsyncClient, wsb: Sandbox, events: list[Event]
) -> None:
    await conn.webhooks.subscribe(["genericContact::*", "crmEngagement::*"], url=RECEIVE_URL)
    contact = await conn.resources("genericContact").create({"firstName": "Gone"})
    conv = (await api.post("/v1/conversations", json={"customer": contact.id})).json()["data"]
    note = (await api.post("/v1/notes", json={"body": "first", "conversation": conv["id"]})).json()["data"]
    await wsb.drain()
    pushed = names(events)
    assert ("genericContact::created", contact.id) in pushed and ("crmEngagement::created", conv["id"]) in pushed
    polled = await conn.webhooks.poll()
    assert names(polled) == [("crmEngagement::created", f"note:{note['id']}")]
    assert polled[0].data is not None and polled[0].data.description == "first"  # type: ignore[attr-defined]
    await api.patch(f"/v1/notes/{note['id']}", json={"body": "second"})
    assert names(await conn.webhooks.poll()) == [("crmEngagement::updated", f"note:{note['id']}")]
    await api.delete(f"/v1/notes/{note['id']}")
    await api.delete(f"/v1/conversations/{conv['id']}")
    await conn.resources("genericContact").delete(contact.id or "")
    await wsb.drain()
    polled = await conn.webhooks.poll()
    assert sorted(names(polled)) == sorted(
        [
            ("genericContact::deleted", contact.id),
            ("crmEngagement::deleted", conv["id"]),
            ("crmEngagement::deleted", f"note:{note['id']}"),
        ]
    )
    assert all(e.data is None for e in polled)
    assert await conn.webhooks.poll() == []


async def test_users_and_teams_without_a_receive_url(conn: Connection, api: httpx.AsyncClient) -> None:
    subs = await conn.webhooks.subscribe(["genericWorkspace::*", "genericUser::created"])
    assert not any(s.native for s in subs)
    team = await conn.resources("genericWorkspace").create({"name": "Nights"})
    user = (await api.post("/v1/users", json={"name": "New Hire", "email": "hire@example.com"})).json()["data"]
    assert sorted(names(await conn.webhooks.poll())) == sorted(
        [("genericWorkspace::created", team.id), ("genericUser::created", user["id"])]
    )
    await conn.resources("genericWorkspace").update(team.id or "", {"name": "Weekends"})
    assert names(await conn.webhooks.poll()) == [("genericWorkspace::updated", team.id)]
    await conn.resources("genericWorkspace").delete(team.id or "")
    assert names(await conn.webhooks.poll()) == [("genericWorkspace::deleted", team.id)]
    assert await conn.webhooks.poll() == []


async def test_contacts_polled_when_there_is_no_url(conn: Connection, api: httpx.AsyncClient) -> None:
    await conn.webhooks.subscribe(["genericContact::*"])
    contacts = conn.resources("genericContact")
    made = [await contacts.create({"firstName": f"P{i}"}) for i in range(3)]
    await contacts.update(made[0].id or "", {"firstName": "P0b"})
    polled = await conn.webhooks.poll()  # created and updated since the last round: one created, newest data
    assert sorted(names(polled)) == sorted(("genericContact::created", c.id) for c in made)
    assert [e.data.first_name for e in polled if e.id == made[0].id] == ["P0b"]  # type: ignore[union-attr]
    await contacts.update(made[1].id or "", {"firstName": "P1b"})
    await contacts.update(made[1].id or "", {"firstName": "P1c"})
    polled = await conn.webhooks.poll()
    assert names(polled) == [("genericContact::updated", made[1].id)]
    assert polled[0].data.first_name == "P1c"  # type: ignore[union-attr]


async def test_paging_past_many_changes(whub: Connectors, wsb: Sandbox) -> None:
    conn = await whub.connect(
        "kustomer",
        "pager",
        api_key=wsb.mint_api_key(name="pg"),
        base_url=wsb.base_url,
        settings={"webhooks": {"page_size": 2, "max_pages": 3}},
    )
    await conn.webhooks.subscribe(["genericCompany::created"])
    made = [await conn.resources("genericCompany").create({"name": f"Co {i}"}) for i in range(9)]
    first = await conn.webhooks.poll()  # at most 3 queries of 2 per round
    rest: list[Event] = []
    while batch := await conn.webhooks.poll():
        rest.extend(batch)
    got = [e.id for e in first + rest]
    assert len(first) <= 6 and sorted(got) == sorted(c.id or "" for c in made) and len(got) == len(set(got))


async def test_unsubscribe_forgets_the_poller(conn: Connection, whub: Connectors) -> None:
    await conn.webhooks.subscribe(["genericCompany::*"])
    assert whub.store.get_watermark(f"poll:{conn.id}:company") is not None
    assert whub.store.poll_known(f"poll:{conn.id}:company")
    await conn.webhooks.unsubscribe(["genericCompany::*"])
    assert whub.store.get_watermark(f"poll:{conn.id}:company") is None
    assert whub.store.poll_known(f"poll:{conn.id}:company") == {}


async def test_a_failed_round_is_retried_without_loss(
    conn: Connection, whub: Connectors, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connectors.errors import ServerError
    from connectors.kustomer.webhooks import KustomerWebhooks

    await conn.webhooks.subscribe(["genericCompany::created"])
    acme = await conn.resources("genericCompany").create({"name": "Acme"})
    real = KustomerWebhooks._search
    calls = [0]

    async def flaky(self: KustomerWebhooks, *args: object, **kwargs: object) -> object:
        calls[0] += 1
        if calls[0] == 1:
            raise ServerError("Kustomer returned 500", status_code=500)
        return await real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(KustomerWebhooks, "_search", flaky)
    assert await whub.webhooks.poll_once() == []
    assert whub.webhooks.stats["poll_failures"] == 1
    monkeypatch.undo()
    assert names(await whub.webhooks.poll_once()) == [("genericCompany::created", acme.id)]


async def test_background_polling(conn: Connection, whub: Connectors) -> None:
    await conn.webhooks.subscribe(["genericCompany::created"])
    arrived: asyncio.Queue[Event] = asyncio.Queue()
    whub.webhooks.on("genericCompany::created")(arrived.put_nowait)
    await whub.webhooks.start_polling(interval=0.02)
    assert whub.webhooks.polling
    acme = await conn.resources("genericCompany").create({"name": "Acme"})
    event = await asyncio.wait_for(arrived.get(), 10)
    assert event.id == acme.id
    await whub.webhooks.stop_polling()
    assert not whub.webhooks.polling


# -- restarts and concurrent pollers on a shared file store ----------------------------------------------


@pytest.fixture
def key() -> bytes:
    return os.urandom(32)


@pytest.fixture
async def file_hubs(tmp_path: Path, key: bytes, wsb: Sandbox) -> AsyncIterator[list[Connectors]]:
    hubs: list[Connectors] = []

    def make() -> Connectors:
        store = ConnectionStore(f"sqlite:///{tmp_path / 'c.db'}", secret_box=SecretBox(key))
        hub = Connectors(settings=FAST, store=store, transport=wsb.transport())
        hubs.append(hub)
        return hub

    yield [make(), make()]
    for hub in hubs:
        await hub.aclose()
        hub.store.close()


async def test_a_restarted_poller_neither_misses_nor_repeats(file_hubs: list[Connectors], wsb: Sandbox) -> None:
    first, second = file_hubs
    conn = await first.connect("kustomer", "tenant-1", api_key=wsb.mint_api_key(), base_url=wsb.base_url)
    await conn.webhooks.subscribe(["genericCompany::*"])
    a = await conn.resources("genericCompany").create({"name": "Before restart"})
    assert names(await first.webhooks.poll_once()) == [("genericCompany::created", a.id)]
    await first.webhooks.start_polling(interval=3600)
    await first.aclose()  # the process goes away
    other = await second.get("kustomer", "tenant-1")
    b = await other.resources("genericCompany").create({"name": "During downtime"})
    await other.resources("genericCompany").update(a.id or "", {"name": "Changed during downtime"})
    restarted = await second.webhooks.poll_once()
    assert names(restarted) == [("genericCompany::created", b.id), ("genericCompany::updated", a.id)]
    assert await second.webhooks.poll_once() == []


async def test_concurrent_pollers_do_not_double_emit(file_hubs: list[Connectors], wsb: Sandbox) -> None:
    first, second = file_hubs
    conn = await first.connect("kustomer", "tenant-1", api_key=wsb.mint_api_key(), base_url=wsb.base_url)
    await conn.webhooks.subscribe(["genericCompany::created"])
    made = [await conn.resources("genericCompany").create({"name": f"Co {i}"}) for i in range(4)]
    rounds = await asyncio.gather(first.webhooks.poll_once(), second.webhooks.poll_once())
    assert sorted(e.id for r in rounds for e in r) == sorted(c.id or "" for c in made)
    # Without the lease (it expired, or a poller ignores it) the watermark CAS still lets only one round win.
    more = [await conn.resources("genericCompany").create({"name": f"More {i}"}) for i in range(3)]
    c1 = (await first.get_by_id(conn.id)).webhooks
    c2 = (await second.get_by_id(conn.id)).webhooks
    wanted = frozenset({"genericCompany::created"})
    results = await asyncio.gather(
        first.webhooks._poll_spec(c1, "company", wanted), second.webhooks._poll_spec(c2, "company", wanted)
    )
    assert sorted(e.id for r in results for e in r) == sorted(c.id or "" for c in more)
    assert [] in results
