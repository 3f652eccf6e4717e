"""Subscribing: one shared Kustomer webhook per org and URL, idempotence, limits, roles, shrinking."""

from __future__ import annotations

import httpx
import pytest

from connectors import Connection, Connectors
from connectors.errors import BadRequestError, ConfigurationError, InsufficientPermissionsError, WebhookLimitError
from connectors.kustomer.sandbox import Sandbox
from connectors.kustomer.webhooks import KustomerWebhooks
from connectors.runtime.webhooks import endpoint_id

from .conftest import RECEIVE_URL, table_dump

pytestmark = pytest.mark.anyio


def remote_hooks(sb: Sandbox) -> list[dict[str, object]]:
    return [dict(h.attrs, id=h.id) for h in sb.state.outbound_webhooks]


async def test_one_webhook_shared_by_owners_and_models(conn: Connection, conn2: Connection, wsb: Sandbox) -> None:
    subs = await conn.webhooks.subscribe(["genericContact::created", "genericContact::updated"], url=RECEIVE_URL)
    assert [(s.event, s.native) for s in subs] == [("genericContact::created", True), ("genericContact::updated", True)]
    await conn2.webhooks.subscribe(["genericWorkspace::*", "crmEngagement::updated"], url=RECEIVE_URL)
    hooks = remote_hooks(wsb)
    assert len(hooks) == 1
    assert sorted(hooks[0]["events"]) == [  # type: ignore[call-overload]
        "kustomer.conversation.update",
        "kustomer.customer.create",
        "kustomer.customer.update",
        "kustomer.team.create",
        "kustomer.team.update",
    ]
    assert hooks[0]["url"] == RECEIVE_URL
    assert {s.kustomer_webhook_id for s in subs} == {hooks[0]["id"]}
    listed = await conn2.webhooks.list()
    assert [(s.event, s.native) for s in listed] == [
        ("crmEngagement::updated", True),
        ("genericWorkspace::created", True),
        ("genericWorkspace::deleted", False),
        ("genericWorkspace::updated", True),
    ]
    assert all(s.owner_id == "tenant-2" for s in listed)


async def test_token_is_stored_encrypted_and_never_in_clear(conn: Connection, wsb: Sandbox, whub: Connectors) -> None:
    await conn.webhooks.subscribe(["genericContact::*"], url=RECEIVE_URL)
    (hook,) = remote_hooks(wsb)
    token = str(hook["token"])
    org = wsb.state.org.id
    ep = endpoint_id("kustomer", org, RECEIVE_URL)
    assert whub.store.get_secret(f"webhook-endpoint:{ep}", str(hook["id"])) == token
    assert token not in table_dump(whub.store)
    assert token not in repr(await conn.webhooks.list())


async def test_subscribe_is_idempotent(conn: Connection, wsb: Sandbox) -> None:
    first = await conn.webhooks.subscribe(["genericContact::created"], url=RECEIVE_URL)
    before = [dict(h.attrs) for h in wsb.state.outbound_webhooks]
    again = await conn.webhooks.subscribe(["genericContact::created"], url=RECEIVE_URL)
    assert again == first
    assert [dict(h.attrs) for h in wsb.state.outbound_webhooks] == before
    assert len(await conn.webhooks.list()) == 1


async def test_unsubscribe_shrinks_then_deletes_the_webhook(
    conn: Connection, conn2: Connection, wsb: Sandbox, whub: Connectors
) -> None:
    await conn.webhooks.subscribe(["genericContact::*"], url=RECEIVE_URL)
    await conn2.webhooks.subscribe(["genericUser::created"], url=RECEIVE_URL)
    (hook,) = remote_hooks(wsb)
    assert await conn.webhooks.unsubscribe(["genericContact::updated"]) == 1
    (hook,) = remote_hooks(wsb)
    assert sorted(hook["events"]) == ["kustomer.customer.create", "kustomer.user.create"]  # type: ignore[call-overload]
    assert await conn.webhooks.unsubscribe() == 2  # created + deleted (polled)
    (hook,) = remote_hooks(wsb)
    assert hook["events"] == ["kustomer.user.create"]
    assert await conn2.webhooks.unsubscribe(["genericUser::*"]) == 1
    assert remote_hooks(wsb) == []
    assert whub.store.list_webhook_endpoints() == []
    assert await conn.webhooks.unsubscribe() == 0
    dump = table_dump(whub.store)
    assert "webhook-endpoint:" not in dump  # the token secret went with the webhook


async def test_limit_of_five_webhooks_per_org(conn: Connection, wsb: Sandbox, api: httpx.AsyncClient) -> None:
    for i in range(5):
        r = await api.post(
            "/v1/outbound-webhooks",
            json={"name": f"other {i}", "url": f"https://other.example.com/{i}", "events": ["kustomer.user.create"]},
        )
        assert r.status_code == 201, r.text
    with pytest.raises(WebhookLimitError) as exc:
        await conn.webhooks.subscribe(["genericContact::created"], url=RECEIVE_URL)
    assert exc.value.limit == 5 and "5 outbound webhooks" in str(exc.value)
    assert await conn.webhooks.list() == []
    # Polled events need no webhook: still possible.
    subs = await conn.webhooks.subscribe(["genericCompany::created"], url=RECEIVE_URL)
    assert [s.native for s in subs] == [False]


async def test_adopts_a_webhook_created_before_a_crash(conn: Connection, wsb: Sandbox, api: httpx.AsyncClient) -> None:
    ep = endpoint_id("kustomer", wsb.state.org.id, RECEIVE_URL)
    r = await api.post(
        "/v1/outbound-webhooks",
        json={"name": f"unified-connectors {ep[:12]} #1", "url": RECEIVE_URL, "events": ["kustomer.user.create"]},
    )
    orphan = r.json()["data"]["id"]
    subs = await conn.webhooks.subscribe(["genericContact::created"], url=RECEIVE_URL)
    (hook,) = remote_hooks(wsb)
    assert hook["id"] == orphan == subs[0].kustomer_webhook_id
    assert hook["events"] == ["kustomer.customer.create"]


async def test_a_webhook_deleted_in_kustomer_is_recreated(
    conn: Connection, wsb: Sandbox, api: httpx.AsyncClient
) -> None:
    subs = await conn.webhooks.subscribe(["genericContact::created"], url=RECEIVE_URL)
    assert (await api.delete(f"/v1/outbound-webhooks/{subs[0].kustomer_webhook_id}")).status_code == 204
    again = await conn.webhooks.subscribe(["genericContact::created"], url=RECEIVE_URL)
    (hook,) = remote_hooks(wsb)
    assert again[0].kustomer_webhook_id == hook["id"] != subs[0].kustomer_webhook_id


async def test_changing_the_url_moves_the_subscription(conn: Connection, wsb: Sandbox) -> None:
    await conn.webhooks.subscribe(["genericContact::created"], url=RECEIVE_URL)
    other = "https://app2.example.com/webhooks/kustomer"
    subs = await conn.webhooks.subscribe(["genericContact::created"], url=other)
    (hook,) = remote_hooks(wsb)
    assert hook["url"] == other and subs[0].kustomer_webhook_id == hook["id"]


async def test_events_beyond_one_webhook_are_split(
    conn: Connection, wsb: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(KustomerWebhooks, "max_events_per_webhook", 3)
    await conn.webhooks.subscribe(["genericContact::*", "genericUser::*", "genericWorkspace::*"], url=RECEIVE_URL)
    hooks = remote_hooks(wsb)
    assert sorted(len(h["events"]) for h in hooks) == [3, 3]  # type: ignore[arg-type]
    events_of = {h["id"]: set(h["events"]) for h in hooks}  # type: ignore[call-overload]
    for sub in await conn.webhooks.list():
        if sub.native:
            model = {"genericContact": "customer", "genericUser": "user", "genericWorkspace": "team"}[
                sub.event.split("::")[0]
            ]
            action = {"created": "create", "updated": "update"}[sub.event.split("::")[1]]
            assert f"kustomer.{model}.{action}" in events_of[sub.kustomer_webhook_id]
    await conn.webhooks.unsubscribe(["genericUser::*", "genericWorkspace::*"])
    (hook,) = remote_hooks(wsb)
    assert sorted(hook["events"]) == ["kustomer.customer.create", "kustomer.customer.update"]  # type: ignore[call-overload]


async def test_recreate_update_method(whub: Connectors, wsb: Sandbox) -> None:
    conn = await whub.connect(
        "kustomer",
        "tenant-r",
        api_key=wsb.mint_api_key(name="r"),
        base_url=wsb.base_url,
        settings={"webhooks": {"update_method": "recreate"}},
    )
    first = await conn.webhooks.subscribe(["genericContact::created"], url=RECEIVE_URL)
    second = await conn.webhooks.subscribe(["genericContact::updated"], url=RECEIVE_URL)
    (hook,) = remote_hooks(wsb)
    assert hook["id"] == second[0].kustomer_webhook_id != first[0].kustomer_webhook_id
    assert sorted(hook["events"]) == ["kustomer.customer.create", "kustomer.customer.update"]  # type: ignore[call-overload]


async def test_bad_events_and_urls(conn: Connection) -> None:
    for bad in (["genericContact::exploded"], ["widget::created"], ["genericContact"], "genericContact::created", []):
        with pytest.raises(ConfigurationError):
            await conn.webhooks.subscribe(bad, url=RECEIVE_URL)
    with pytest.raises(ConfigurationError):
        await conn.webhooks.subscribe(["genericContact::created"], url="ftp://example.com/x")
    assert await conn.webhooks.list() == []


async def test_patterns_expand_and_nothing_is_half_subscribed(conn: Connection, whub: Connectors) -> None:
    from connectors.kustomer.provision import provision_crm

    with pytest.raises(BadRequestError, match="crm-opportunity"):  # the CRM Klasses do not exist yet
        await conn.webhooks.subscribe(["*"])
    assert await conn.webhooks.list() == []
    assert whub.store.get_watermark(f"poll:{conn.id}:company") is None
    await provision_crm(conn)
    subs = await conn.webhooks.subscribe(["*"])
    assert len(subs) == 8 * 3 and not any(s.native for s in subs)
    assert await conn.webhooks.unsubscribe(["*::deleted"]) == 8


async def test_missing_roles_fail_early(whub: Connectors, wsb: Sandbox) -> None:
    key = wsb.mint_api_key(roles=["org.permission.customer.read", "org.permission.search.create"], name="ro")
    conn = await whub.connect("kustomer", "tenant-ro", api_key=key, base_url=wsb.base_url)
    with pytest.raises(InsufficientPermissionsError) as exc:
        await conn.webhooks.subscribe(["genericContact::created"], url=RECEIVE_URL)
    assert "org.permission.outbound_webhook.read" in exc.value.missing_roles
    with pytest.raises(InsufficientPermissionsError) as exc:
        await conn.webhooks.subscribe(["genericCompany::created"])
    assert exc.value.operation == "genericCompany::list"
    # Polling contacts needs only what the key has.
    subs = await conn.webhooks.subscribe(["genericContact::deleted"])
    assert [s.native for s in subs] == [False]
    assert wsb.state.outbound_webhooks.__len__() == 0
