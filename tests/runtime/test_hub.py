"""The ``Connectors`` hub with API keys: connect, regions, opening and listing, roles and permission errors."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from connectors import Connection, Connectors, Settings
from connectors.errors import (
    AuthenticationError,
    ConfigurationError,
    InsufficientPermissionsError,
    MappingError,
    NotConnectedError,
    RegionMismatchError,
)
from connectors.kustomer.roles import KUSTOMER_OPERATIONS
from connectors.kustomer.sandbox import Sandbox, SandboxSettings
from connectors.runtime.connection import ConnectionInfo
from connectors.runtime.store import ConnectionStore

pytestmark = pytest.mark.anyio


class HostRecorder(httpx.AsyncBaseTransport):
    """Remembers the host of every request and forwards it to the in-process sandbox."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.hosts: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.hosts.append(request.url.host)
        return await self.inner.handle_async_request(request)


def _requests(sb: Sandbox) -> int:
    return int(sb.state.counters["requests"])


# -- connecting ------------------------------------------------------------------------------------------------


async def test_connect_with_an_api_key(hub: Connectors, sandbox: Sandbox) -> None:
    key = sandbox.mint_api_key(name="integration key")
    conn = await hub.connect("kustomer", "tenant-a", api_key=f"  {key}\n", base_url=sandbox.base_url, label="main")
    info = conn.info
    assert (info.connector_id, info.owner_id, info.label, info.auth_type, info.status) == (
        "kustomer",
        "tenant-a",
        "main",
        "api_key",
        "active",
    )
    assert info.base_url == sandbox.base_url and info.region is None
    assert info.metadata["orgId"] == sandbox.org_id and info.metadata["credentialName"] == "integration key"
    assert set(info.operations) == set(KUSTOMER_OPERATIONS)  # every role: every operation
    as_dict = info.to_dict()
    assert json.loads(json.dumps(as_dict)) == as_dict and as_dict["authType"] == "api_key"
    assert key not in json.dumps(as_dict) and key not in repr(conn) and key not in repr(info)
    identity = await conn.whoami()
    assert identity.org_id == sandbox.org_id and identity.org_name is None  # tokens/current does not say
    assert identity.user_name == "integration key" and identity.granted_roles
    assert identity.to_dict()["orgId"] == sandbox.org_id


async def test_operations_default_to_what_the_key_allows(hub: Connectors, sandbox: Sandbox) -> None:
    key = sandbox.mint_api_key(roles=["org.permission.user.read"])
    conn = await hub.connect("kustomer", "t", api_key=key, base_url=sandbox.base_url)
    assert set(conn.info.operations) == {"genericUser::list", "genericUser::retrieve", "whoami", "proxy"}
    assert conn.info.granted_roles == ("org.permission.user.read",)


async def test_connect_refuses_operations_the_key_cannot_do(hub: Connectors, sandbox: Sandbox) -> None:
    key = sandbox.mint_api_key(roles=["org.permission.customer.read", "org.permission.search.create"])
    with pytest.raises(InsufficientPermissionsError) as caught:
        await hub.connect(
            "kustomer",
            "t",
            api_key=key,
            base_url=sandbox.base_url,
            operations=["genericContact::list", "genericContact::create", "genericCompany::list"],
        )
    err = caught.value
    assert err.operation == "genericContact::create, genericCompany::list"
    assert set(err.missing_roles) == {"org.permission.customer.create", "org.permission.company.read"}
    assert "org.permission.customer.create" in str(err)
    assert await hub.list() == []  # nothing stored
    with pytest.raises(ConfigurationError, match="did you mean 'genericContact::list'"):
        await hub.connect("kustomer", "t", api_key=key, base_url=sandbox.base_url, operations=["genericContact::lst"])


async def test_connect_refuses_a_bad_key(hub: Connectors, sandbox: Sandbox) -> None:
    with pytest.raises(AuthenticationError) as caught:
        await hub.connect("kustomer", "t", api_key="not-a-real-key", base_url=sandbox.base_url)
    assert caught.value.status_code == 401 and "not-a-real-key" not in str(caught.value)
    with pytest.raises(ConfigurationError, match="api_key is empty"):
        await hub.connect("kustomer", "t", api_key="   ", base_url=sandbox.base_url)
    with pytest.raises(ConfigurationError, match="owner_id"):
        await hub.connect("kustomer", "", api_key="k", base_url=sandbox.base_url)
    assert await hub.list() == []


@pytest.mark.parametrize(
    ("region", "host"),
    [("us", "api.kustomerapp.com"), ("eu", "api.prod2.kustomerapp.com"), ("in", "api.prod4.kustomerapp.com")],
)
async def test_region_selection(region: str, host: str, memory_store: ConnectionStore) -> None:
    sb = Sandbox(SandboxSettings(region=region, customers=3, companies=1, users=2, teams=0))
    recorder = HostRecorder(sb.transport())
    async with Connectors(settings=Settings(), store=memory_store, transport=recorder) as hub:
        conn = await hub.connect("kustomer", "t", api_key=sb.mint_api_key(), region=region)
        assert conn.info.region == region and conn.info.base_url == f"https://{host}"
        await conn.resources("genericUser").list(limit=1)
        reopened = await hub.get("kustomer", "t")
        await reopened.proxy("GET", "/v1/users/current")
    assert set(recorder.hosts) == {host}


async def test_org_subdomain(memory_store: ConnectionStore, sandbox: Sandbox) -> None:
    recorder = HostRecorder(sandbox.transport())
    async with Connectors(settings=Settings(), store=memory_store, transport=recorder) as hub:
        conn = await hub.connect("kustomer", "t", api_key=sandbox.mint_api_key(), org="acme")
        await conn.resources("genericUser").list(limit=1)
    assert set(recorder.hosts) == {"acme.api.kustomerapp.com"}


async def test_wrong_region_tells_which_to_set(memory_store: ConnectionStore) -> None:
    eu = Sandbox(SandboxSettings(region="eu", customers=3, companies=1, users=2, teams=0))
    async with Connectors(settings=Settings(), store=memory_store, transport=eu.transport()) as hub:
        with pytest.raises(RegionMismatchError) as caught:
            await hub.connect("kustomer", "t", api_key=eu.mint_api_key(region="us"), region="eu")
        assert caught.value.expected_region == "us" and "set region='us'" in str(caught.value)
        assert await hub.list() == []


# -- opening, listing, disconnecting ----------------------------------------------------------------------------


async def test_get_list_disconnect(hub: Connectors, sandbox: Sandbox) -> None:
    a = await hub.connect("kustomer", "owner-1", api_key=sandbox.mint_api_key(), base_url=sandbox.base_url)
    b = await hub.connect("kustomer", "owner-1", api_key=sandbox.mint_api_key(), base_url=sandbox.base_url, label="eu")
    c = await hub.connect("kustomer", "owner-2", api_key=sandbox.mint_api_key(), base_url=sandbox.base_url)
    assert (await hub.get("kustomer", "owner-1")).id == a.id
    assert (await hub.get("kustomer", "owner-1", "eu")).id == b.id
    assert (await hub.get_by_id(c.id)).info.owner_id == "owner-2"
    assert [i.id for i in await hub.list(owner_id="owner-1")] == [a.id, b.id]
    assert {i.id for i in await hub.list(connector_id="kustomer")} == {a.id, b.id, c.id}
    assert all(isinstance(i, ConnectionInfo) for i in await hub.list())
    with pytest.raises(NotConnectedError, match="owner 'owner-3' has no kustomer connection"):
        await hub.get("kustomer", "owner-3")
    with pytest.raises(NotConnectedError, match="label 'us'"):
        await hub.get("kustomer", "owner-1", "us")
    with pytest.raises(NotConnectedError):
        await hub.get_by_id("nope")
    assert await hub.disconnect("kustomer", "owner-1", "eu") is True
    assert await hub.disconnect("kustomer", "owner-1", "eu") is False
    assert [i.id for i in await hub.list(owner_id="owner-1")] == [a.id]


async def test_reconnect_keeps_the_id_and_replaces_the_key(hub: Connectors, sandbox: Sandbox) -> None:
    first = await hub.connect(
        "kustomer", "o", api_key=sandbox.mint_api_key(roles=["org.permission.user.read"]), base_url=sandbox.base_url
    )
    with pytest.raises(InsufficientPermissionsError):
        await first.resources("genericWorkspace").list()
    second = await hub.connect("kustomer", "o", api_key=sandbox.mint_api_key(), base_url=sandbox.base_url)
    assert second.id == first.id and second.info.created_at == first.info.created_at
    assert (await second.resources("genericWorkspace").list(limit=1)).data
    assert (await hub.get("kustomer", "o")).info.granted_roles == second.info.granted_roles


async def test_unknown_model_and_bad_input(connection: Connection) -> None:
    with pytest.raises(ConfigurationError):
        connection.resources("genericThing")
    with pytest.raises(ConfigurationError):
        connection.fields("genericThing")
    contacts = connection.resources("genericContact")
    with pytest.raises(ConfigurationError, match="limit"):
        await contacts.list(limit=0)
    with pytest.raises(MappingError, match="id"):
        await contacts.retrieve("../users")
    with pytest.raises(MappingError) as caught:
        await contacts.create({"emails": "not-a-list"})
    assert caught.value.model == "genericContact" and caught.value.field == "emails"
    with pytest.raises(ConfigurationError, match="unknown Kustomer region"):
        await connection.hub.connect("kustomer", "x", api_key="k", region="mars")


# -- permissions -------------------------------------------------------------------------------------------------


async def test_missing_roles_fail_before_any_request(hub: Connectors, sandbox: Sandbox) -> None:
    key = sandbox.mint_api_key(roles=["org.permission.customer.read", "org.permission.search.create"])
    conn = await hub.connect("kustomer", "t", api_key=key, base_url=sandbox.base_url)
    contacts = conn.resources("genericContact")
    assert (await contacts.list(limit=2)).data
    before = _requests(sandbox)
    with pytest.raises(InsufficientPermissionsError) as create:
        await contacts.create({"firstName": "Ada"})
    with pytest.raises(InsufficientPermissionsError) as delete:
        await contacts.delete("000000000000000000000001")
    with pytest.raises(InsufficientPermissionsError) as fields:
        await conn.fields("genericContact").list()
    with pytest.raises(InsufficientPermissionsError) as other_model:
        async for _ in conn.resources("genericCompany").iter():
            pass
    assert _requests(sandbox) == before  # nothing reached the API
    assert create.value.operation == "genericContact::create"
    assert create.value.missing_roles == ("org.permission.customer.create",)
    assert delete.value.missing_roles == ("org.permission.customer.delete",)
    assert fields.value.operation == "genericContact::fieldRead"
    assert fields.value.missing_roles == ("org.permission.metadata.read",)
    assert other_model.value.operation == "genericCompany::list"
    assert "org.permission.customer.create" in str(create.value)
    assert create.value.granted_roles == ("org.permission.customer.read", "org.permission.search.create")
    body = create.value.to_dict()
    assert body["code"] == "insufficient_permissions" and body["missingRoles"] == ["org.permission.customer.create"]
    with pytest.raises(InsufficientPermissionsError):
        conn.require("genericContact::update")
    assert conn.require("genericContact::retrieve").name == "genericContact::retrieve"


async def test_legacy_broad_roles_count(hub: Connectors, sandbox: Sandbox) -> None:
    key = sandbox.mint_api_key(roles=["org.user", "org.admin"])  # like the public example key
    conn = await hub.connect("kustomer", "t", api_key=key, base_url=sandbox.base_url)
    assert "genericContact::create" in conn.info.operations
    created = await conn.resources("genericContact").create({"firstName": "Legacy", "email": "legacy@example.com"})
    assert created.id


async def test_a_403_becomes_insufficient_permissions(hub: Connectors, sandbox: Sandbox) -> None:
    # The deployment's role table says list needs nothing (a wrong override); Kustomer answers 403.
    key = sandbox.mint_api_key(roles=["org.permission.user.read"])
    overrides: dict[str, list[list[str]]] = {"genericContact::list": [], "genericContact::retrieve": []}
    conn = await hub.connect(
        "kustomer", "t", api_key=key, base_url=sandbox.base_url, settings={"role_overrides": overrides}
    )
    before = _requests(sandbox)
    with pytest.raises(InsufficientPermissionsError) as caught:
        await conn.resources("genericContact").list()
    assert _requests(sandbox) > before
    err = caught.value
    assert err.operation == "genericContact::list"
    assert "org.permission.customer.read" in str(err)  # Kustomer's message names the role ...
    assert err.missing_roles == ("org.permission.customer.read", "org.permission.search.create")  # ... and so do we
    assert err.__cause__ is not None and getattr(err.__cause__, "status_code", None) == 403
    with pytest.raises(InsufficientPermissionsError):
        await conn.resources("genericContact").retrieve("000000000000000000000001")


def test_cli_prints_the_roles_to_grant() -> None:
    from connectors.cli import app

    result = CliRunner().invoke(app, ["kustomer", "roles", "genericContact::list", "genericContact::create", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["operations"] == ["genericContact::list", "genericContact::create"]
    assert data["roles"] == [
        "org.permission.customer.create",
        "org.permission.customer.read",
        "org.permission.search.create",
    ]
    table = CliRunner().invoke(app, ["kustomer", "roles", "genericUser::list"])
    assert table.exit_code == 0 and "org.permission.user.read" in table.stdout
    typo = CliRunner().invoke(app, ["kustomer", "roles", "genericContact::lst"])
    assert typo.exit_code != 0 and "did you mean genericContact::list" in typo.output


async def test_a_key_with_the_printed_roles_can_do_exactly_those_operations(hub: Connectors, sandbox: Sandbox) -> None:
    from connectors.cli import app

    ops = ["genericContact::list", "genericContact::create", "genericContact::update"]
    printed = json.loads(CliRunner().invoke(app, ["kustomer", "roles", *ops, "--json"]).stdout)["roles"]
    conn = await hub.connect(
        "kustomer", "t", api_key=sandbox.mint_api_key(roles=printed), base_url=sandbox.base_url, operations=ops
    )
    contacts = conn.resources("genericContact")
    created = await contacts.create({"firstName": "Grace", "email": "grace@example.com"})
    assert (await contacts.update(created.id or "", {"lastName": "Hopper"})).last_name == "Hopper"
    assert (await contacts.list(filters={"email": "grace@example.com"})).data
    with pytest.raises(InsufficientPermissionsError):
        await contacts.delete(created.id or "")


async def test_connection_settings_reach_the_connector(hub: Connectors, sandbox: Sandbox) -> None:
    settings: dict[str, Any] = {"role_overrides": {"genericUser::list": [["org.user.read"]]}}
    conn = await hub.connect(
        "kustomer", "t", api_key=sandbox.mint_api_key(), base_url=sandbox.base_url, settings=settings
    )
    assert conn.operation("genericUser::list").requires == (("org.user.read",),)
    with pytest.raises(ConfigurationError, match="unknown operation"):
        await hub.connect(
            "kustomer",
            "t2",
            api_key=sandbox.mint_api_key(),
            base_url=sandbox.base_url,
            settings={"role_overrides": {"nope": []}},
        )


async def test_hub_repr_and_lifecycle(sandbox: Sandbox, memory_store: ConnectionStore) -> None:
    hub = Connectors(settings=Settings(), store=memory_store, transport=sandbox.transport())
    assert repr(hub) == "Connectors(connectors=['kustomer'])"
    conn = await hub.connect("kustomer", "t", api_key=sandbox.mint_api_key(), base_url=sandbox.base_url)
    assert (await hub.get("kustomer", "t")) is conn  # opened connections are reused
    await hub.aclose()
    assert memory_store.get_by_id(conn.id) is not None  # the store belongs to the caller: still open
