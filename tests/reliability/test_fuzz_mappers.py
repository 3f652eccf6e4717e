"""Bad input, fuzzed: Kustomer payloads into the mappers, directly and through a connection.

The seeds are real payloads read from the sandbox (customers, companies, users, teams, conversations, notes,
the CRM KObjects and a custom ``order`` KObject). Hypothesis mutates them: keys deleted, values nulled or
replaced by JSON of another type, huge or odd strings (control characters, lone surrogates), extra keys,
wrong ids, nested garbage. Every input either maps to the model or raises ``MappingError`` naming the model;
through a connection (the bytes come back from "Kustomer" on ``GET``), a malformed envelope may also raise
``ResponseValidationError``. Nothing else: no ``KeyError``, no pydantic ``ValidationError``, no crash.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import httpx
import pytest
from _reliability import Tally, fuzz, hub_settings, json_of, json_values, mutations, quiet_settings, scalars
from hypothesis import given
from hypothesis import strategies as st

from connectors import Connection, Connectors
from connectors.errors import MappingError, ResponseValidationError
from connectors.kustomer.provision import provision_crm, seed_demo_crm
from connectors.kustomer.sandbox import Sandbox
from connectors.runtime.secrets import SecretBox
from connectors.runtime.store import ConnectionStore
from unified_models import UnifiedResource, model_class

pytestmark = [pytest.mark.reliability]

Seed = tuple[str, str, dict[str, Any]]  # (unified model, collection path, raw resource)

SOURCES: dict[str, str] = {
    "genericContact": "/v1/customers",
    "genericCompany": "/v1/companies",
    "genericUser": "/v1/users",
    "genericWorkspace": "/v1/teams",
    "crmEngagement": "/v1/conversations",
    "crmOpportunity": "/v1/klasses/crm-opportunity",
    "crmPipeline": "/v1/klasses/crm-pipeline",
    "crmStage": "/v1/klasses/crm-stage",
    "custom:order": "/v1/klasses/order",
}


async def _collect_seeds() -> list[Seed]:
    sb = Sandbox(  # a fixed clock: the seeds (their timestamps) are the same on every run, so are the examples
        clock=lambda: 1_800_000_000.0,
        settings=quiet_settings(
            customers=12,
            companies=6,
            users=4,
            teams=2,
            conversations_per_customer=1.0,
            notes_per_conversation=1.0,
            orders_per_customer=1.0,
        ),
    )
    store = ConnectionStore("sqlite:///:memory:", secret_box=SecretBox(b"k" * 32))
    try:
        async with Connectors(settings=hub_settings(), store=store, transport=sb.transport()) as hub:
            conn = await hub.connect("kustomer", "seeds", api_key=sb.mint_api_key(), base_url=sb.base_url)
            await provision_crm(conn)
            await seed_demo_crm(conn)
            seeds: list[Seed] = []
            for model, path in [*SOURCES.items(), ("crmEngagement", "/v1/notes")]:
                body = (await conn.proxy("GET", path, params={"pageSize": 4})).json()
                seeds.extend((model, path, resource) for resource in body["data"][:4])
    finally:
        store.close()
    assert {model for model, _, _ in seeds} == set(SOURCES)
    return seeds


@pytest.fixture(scope="module")
def seeds() -> list[Seed]:
    """Real payloads of every mapped Kustomer object."""
    return anyio.run(_collect_seeds)


# -- mutations --------------------------------------------------------------------------------------------------

# What JSON from the API may also carry: unpaired surrogates (a truncated emoji, escaped as \\ud83d).
api_values = json_of(scalars | st.sampled_from(["\ud83d", "x\udc00y"]))


@st.composite
def mutated(draw: st.DrawFn, seeds: list[Seed], values: st.SearchStrategy[Any] = json_values) -> Seed:
    """A real payload with 1 to 6 random mutations."""
    model, path, seed = draw(st.sampled_from(seeds))
    return model, path, draw(mutations(seed, values))


def _expected_model(model: str, obj: UnifiedResource) -> bool:
    return isinstance(obj, model_class(model))


# -- the mappers, as the resource backends call them ------------------------------------------------------------


@pytest.fixture(scope="module")
def mapping_connection(seeds: list[Seed]) -> Iterator[Connection]:
    """A connection whose registry and mapping contexts the direct fuzz uses (no calls are made)."""
    sb = Sandbox(quiet_settings())
    store = ConnectionStore("sqlite:///:memory:", secret_box=SecretBox(b"m" * 32))

    async def open_() -> tuple[Connectors, Connection]:
        hub = Connectors(settings=hub_settings(), store=store, transport=sb.transport())
        return hub, await hub.connect("kustomer", "mapper-fuzz", api_key=sb.mint_api_key(), base_url=sb.base_url)

    hub, conn = anyio.run(open_)
    yield conn
    anyio.run(hub.aclose)
    store.close()


def test_mutated_kustomer_payloads_map_or_raise_mapping_error(
    seeds: list[Seed], mapping_connection: Connection, tally: Tally
) -> None:
    session = mapping_connection.session
    outcomes = {"mapped": 0, "refused": 0}

    @fuzz(2000)
    @given(case=mutated(seeds), include_raw=st.booleans())
    def check(case: Seed, include_raw: bool) -> None:
        model, _, resource = case
        context = session.mapping_context(model, include_raw=include_raw)
        refusal: MappingError | None = None
        try:
            obj = session.registry.to_unified(resource, context)
        except MappingError as exc:
            refusal = exc
        if refusal is not None:
            outcomes["refused"] += 1
            assert refusal.model in (model, model.split(":")[0]), refusal  # custom objects: "custom"
            assert str(refusal)
            return
        outcomes["mapped"] += 1
        assert _expected_model(model, obj)
        obj.model_dump_json()  # what the host app and the CLI do with it next

    check()
    tried = sum(outcomes.values())
    tally.record("mapper payloads", tried=tried, rejected=outcomes["refused"])
    tally.note(
        f"mapper fuzz: {tried} mutated payloads, {outcomes['mapped']} mapped, {outcomes['refused']} MappingError"
    )
    assert outcomes["mapped"] > 0 and outcomes["refused"] > 0


# -- through a connection: the payload is what "Kustomer" answers ---------------------------------------------


class PayloadTransport(httpx.AsyncBaseTransport):
    """Serves the current fuzz payload for every read once armed; identity calls and writes go to the sandbox."""

    def __init__(self, sandbox: httpx.AsyncBaseTransport) -> None:
        self.sandbox = sandbox
        self.armed = False
        self.body = b"{}"

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        identity = request.url.path in ("/v1/auth/tokens/current", "/v1/users/current")
        if self.armed and request.method == "GET" and not identity:
            return httpx.Response(200, content=self.body, headers={"content-type": "application/json"})
        return await self.sandbox.handle_async_request(request)


envelopes = st.sampled_from(["object", "list", "raw", "bytes"])


@pytest.mark.anyio
async def test_mutated_payloads_from_the_api_map_or_raise_typed_errors(
    seeds: list[Seed], make_hub: Callable[..., Connectors], tally: Tally
) -> None:
    sb = Sandbox(quiet_settings())
    transport = PayloadTransport(sb.transport())
    hub = make_hub(transport)
    conn = await hub.connect("kustomer", "api-fuzz", api_key=sb.mint_api_key(), base_url=sb.base_url)
    outcomes = {"mapped": 0, "MappingError": 0, "ResponseValidationError": 0}

    transport.armed = True

    async def read(model: str, path: str, resource: Any, envelope: str, junk: bytes) -> None:
        if envelope == "object":
            transport.body = json.dumps({"data": resource}).encode()
        elif envelope == "list":
            transport.body = json.dumps({"data": [resource], "links": {"next": None}}).encode()
        elif envelope == "raw":
            transport.body = json.dumps(resource).encode()
        else:
            transport.body = junk
        resources = conn.resources(model)
        for call in ("retrieve", "list"):
            refusal: MappingError | ResponseValidationError | None = None
            try:
                if call == "retrieve":
                    result: Any = await resources.retrieve("6412e0146bd650f9c3000001")
                else:
                    result = await resources.list(limit=5)
            except (MappingError, ResponseValidationError) as exc:
                refusal = exc
            if refusal is not None:
                outcomes[type(refusal).__name__] += 1
                assert str(refusal)
            else:
                outcomes["mapped"] += 1
                items = [result] if call == "retrieve" else list(result.data)
                assert all(_expected_model(model, item) for item in items)
                for item in items:
                    item.model_dump_json()  # what the host app and the CLI do with it next

    # Hypothesis drives a worker thread; each example runs on the test's event loop.
    @fuzz(600)
    @given(case=mutated(seeds, api_values), envelope=envelopes, junk=st.binary(max_size=40))
    def check(case: Seed, envelope: str, junk: bytes) -> None:
        anyio.from_thread.run(read, *case, envelope, junk)

    await anyio.to_thread.run_sync(check)
    tried = sum(outcomes.values())
    refused = tried - outcomes["mapped"]
    tally.record("API payloads", tried=tried, rejected=refused)
    tally.note(
        f"API payload fuzz: {tried} reads of mutated payloads, {outcomes['mapped']} mapped, "
        f"{outcomes['MappingError']} MappingError, {outcomes['ResponseValidationError']} ResponseValidationError"
    )
    assert outcomes["mapped"] > 0 and outcomes["MappingError"] > 0 and outcomes["ResponseValidationError"] > 0
