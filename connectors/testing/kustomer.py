"""The Kustomer contract: :class:`KustomerContract`, ready to subclass.

::

    # tests/contract/test_kustomer_contract.py
    from connectors.testing.kustomer import KustomerContract

    class TestKustomerContract(KustomerContract):
        pass

A plugin that replaces a Kustomer mapper runs the same contract with its plugin loaded::

    class TestMyMappers(KustomerContract):
        def registry(self):
            return build_registry(plugins=[my_plugin])

Backends: the in-process sandbox (seed :data:`SANDBOX_SEED`, fixed clock :data:`SANDBOX_CLOCK`), cassettes
recorded from that sandbox over real HTTP, and a live org from ``KUSTOMER_API_KEY`` (+ ``KUSTOMER_REGION`` or
``KUSTOMER_ORG``). Live runs create only records tagged ``uc-contract-<random>`` and delete them afterwards;
companies and users (which Kustomer cannot delete) are only read. The CRM Klasses must exist in a live org
(``connectors kustomer provision``); the sandbox gets them provisioned through the proxy. The permission
check needs a second key, ``KUSTOMER_CONTRACT_RESTRICTED_API_KEY``, granted only
``org.permission.customer.read`` and ``org.permission.search.create``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar, Final

import pytest

from connectors.testing.contract import ConnectorContract, ContractRun, Endpoint, KnownIssue, ModelCase, SampleContext
from unified_models import ResourceRef

if TYPE_CHECKING:
    from connectors.kustomer.sandbox import Sandbox, SandboxSettings
    from connectors.settings import Settings

__all__ = [
    "KUSTOMER_CASES",
    "RESTRICTED_KEY_ENV",
    "SANDBOX_CLOCK",
    "SANDBOX_SEED",
    "KustomerContract",
    "contact_sample",
    "sandbox_settings",
]

SANDBOX_SEED: Final = 42
"""Seed of the contract sandbox: its ids, seed data and signing keys are the same on every run."""

SANDBOX_CLOCK: Final = 1_772_323_200.0
"""The contract sandbox's frozen clock: 2026-03-01T00:00:00Z (after the seed data's ``seed_time``)."""

RESTRICTED_KEY_ENV: Final = "KUSTOMER_CONTRACT_RESTRICTED_API_KEY"
"""A live key granted only customer read and search, for the permission check."""

_STARTED: Final = "2026-02-01T10:00:00Z"


def sandbox_settings() -> SandboxSettings:
    """Small, deterministic sandbox settings (keep cassettes small; pages still need several requests)."""
    from connectors.kustomer.sandbox import SandboxSettings

    return SandboxSettings(
        seed=SANDBOX_SEED,
        customers=6,
        companies=3,
        users=2,
        teams=2,
        conversations_per_customer=0.5,
        messages_per_conversation=1.0,
        notes_per_conversation=0.5,
        orders_per_customer=0.5,
        bulk_processing_seconds=0.0,
        # The contract is not about rate limits (the transport tests are): budgets large enough that the
        # client never waits on real time against the frozen sandbox clock.
        rate_limit_per_minute=100_000,
        search_limit_per_minute=100_000,
    )


def contact_sample(s: SampleContext) -> dict[str, Any]:
    """A contact carrying the run tag (fictional phone, reserved email domain)."""
    return {
        "firstName": "Ada",
        "lastName": f"Lovelace {s.tag}",
        "email": f"{s.tag}-{s.index}@example.com",
        "phone": f"+1202555{100 + s.index:04d}",
        "tags": [s.tag],
        "externalId": f"{s.tag}-contact-{s.index}",
    }


KUSTOMER_CASES: Final[tuple[ModelCase, ...]] = (
    ModelCase(
        "genericContact",
        sample=contact_sample,
        change=lambda s: {"firstName": "Grace"},
        tag_filter=lambda s: {"tags": [s.tag]},
    ),
    ModelCase(
        "genericCompany",
        sample=lambda s: {
            "name": f"{s.tag} Company {s.index}",
            "tags": [s.tag],
            "externalId": f"{s.tag}-company-{s.index}",
        },
        change=lambda s: {"name": f"{s.tag} Company renamed"},
        tag_filter=lambda s: {"tags": [s.tag]},
        unsupported=frozenset({"delete"}),
        live_writes=False,
    ),
    ModelCase(
        "genericUser",
        sample=lambda s: {
            "firstName": "Avery",
            "lastName": f"Tester {s.tag}",
            "email": f"{s.tag}-user-{s.index}@example.com",
            "displayName": f"Avery {s.tag}",
        },
        change=lambda s: {"displayName": f"Avery renamed {s.tag}"},
        unsupported=frozenset({"delete"}),
        live_writes=False,
    ),
    ModelCase(
        "genericWorkspace",
        sample=lambda s: {"name": f"{s.tag}-team-{s.index}", "displayName": f"Team {s.tag}"},
        change=lambda s: {"displayName": f"Team renamed {s.tag}"},
        page_size=1,
    ),
    ModelCase(
        "crmStage",
        sample=lambda s: {"name": f"{s.tag} stage {s.index}", "type": "open", "order": s.index, "probability": 10},
        change=lambda s: {"probability": 55, "type": "won"},
        tag_filter=lambda s: {"name": s.tag},
    ),
    ModelCase(
        "crmPipeline",
        sample=lambda s: {"name": f"{s.tag} pipeline {s.index}", "stages": []},
        change=lambda s: {"name": f"{s.tag} pipeline renamed"},
        tag_filter=lambda s: {"name": s.tag},
    ),
    ModelCase(
        "crmOpportunity",
        sample=lambda s: {
            "name": f"{s.tag} deal {s.index}",
            "amount": 1000.5 + s.index,
            "currency": "USD",
            "status": "open",
            "closeDate": "2026-06-30",
            "probability": 25,
        },
        change=lambda s: {"status": "won", "amount": 1200.0},
        tag_filter=lambda s: {"name": s.tag},
    ),
    ModelCase(
        "crmEngagement",
        sample=lambda s: {
            "type": "email",
            "direction": "outbound",
            "title": f"{s.tag} email {s.index}",
            "startedAt": _STARTED,
            "contacts": [s.ref("contact").model_dump()],
        },
        change=lambda s: {"title": f"{s.tag} email renamed"},
        tag_filter=lambda s: {"contact": s.ref("contact").id},
        requires=("contact",),
        ignore=frozenset({"started_at"}),  # read-only: Kustomer sets createdAt (mapper docstring)
    ),
    ModelCase(
        "crmEngagement",
        case_id="crmEngagement-note",
        sample=lambda s: {
            "type": "note",
            "description": f"{s.tag} note {s.index}",
            "startedAt": _STARTED,
            "contacts": [s.ref("contact").model_dump()],
        },
        change=lambda s: {"description": f"{s.tag} note edited"},
        tag_filter=lambda s: {"type": "note", "contact": s.ref("contact").id},
        requires=("contact",),
        ignore=frozenset({"started_at"}),
    ),
    ModelCase(
        "custom:order",
        sample=lambda s: {"title": f"{s.tag} order {s.index}", "tags": [s.tag], "externalId": f"{s.tag}-o{s.index}"},
        change=lambda s: {"title": f"{s.tag} order renamed"},
        tag_filter=lambda s: {"tags": [s.tag]},
    ),
)
"""The Kustomer model cases: every unified model, notes and a custom Klass (the sandbox's ``order``)."""


def _minter(sb: Sandbox) -> Any:
    def credential(purpose: str, roles: Sequence[str]) -> str:
        return sb.mint_api_key(roles=list(roles), name=f"contract {purpose} key")

    return credential


class KustomerContract(ConnectorContract):
    """The contract of the built-in Kustomer connector (subclass it as ``Test...`` to run it)."""

    connector_id: ClassVar[str] = "kustomer"
    entry_point: ClassVar[str | None] = "kustomer"
    cases: ClassVar[tuple[ModelCase, ...]] = KUSTOMER_CASES
    extra_operations: ClassVar[tuple[str, ...]] = ("klasses::provision",)
    cassette_origin: ClassVar[str] = "https://api.kustomer.test"
    known_issues: ClassVar[dict[str, KnownIssue]] = {}
    restricted_credential_hint: ClassVar[str] = (
        f"set {RESTRICTED_KEY_ENV} to a key granted only org.permission.customer.read and org.permission.search.create"
    )

    def hub_settings(self, *, live: bool) -> Settings | None:
        """Off a live org, a client-side budget large enough never to wait (the sandbox still counts)."""
        from connectors.settings import Settings

        if live:
            return None
        return Settings(kustomer={"rate_limit": 100_000, "search_limit": 100_000})

    def make_sandbox(self) -> Sandbox:
        """A fresh sandbox with :func:`sandbox_settings` and the frozen :data:`SANDBOX_CLOCK`."""
        from connectors.kustomer.sandbox import Sandbox

        return Sandbox(sandbox_settings(), clock=lambda: SANDBOX_CLOCK)

    @contextmanager
    def sandbox_endpoint(self) -> Iterator[Endpoint]:
        """The sandbox in process (no sockets)."""
        sb = self.make_sandbox()
        yield Endpoint(
            transport=sb.transport(),
            connect_options={"base_url": sb.base_url},
            credential=_minter(sb),
            source="sandbox",
            description="Kustomer sandbox in process",
        )

    @contextmanager
    def recording_endpoint(self) -> Iterator[Endpoint]:
        """The sandbox served by uvicorn on 127.0.0.1 (cassettes are recorded from real HTTP)."""
        from connectors.kustomer.sandbox import running_sandbox

        sb = self.make_sandbox()
        with running_sandbox(sandbox=sb) as (_, base_url):
            yield Endpoint(
                transport=None,
                connect_options={"base_url": base_url},
                credential=_minter(sb),
                source="sandbox",
                description=(
                    f"the unified-connectors Kustomer sandbox (connectors.kustomer.sandbox, seed {SANDBOX_SEED}, "
                    "clock 2026-03-01T00:00:00Z) over real HTTP on 127.0.0.1, not a live Kustomer org"
                ),
                metadata={"sandbox_seed": SANDBOX_SEED, "sandbox_clock": "2026-03-01T00:00:00Z"},
            )

    def live_endpoint(self) -> Endpoint | str:
        """A live org from ``KUSTOMER_API_KEY`` and ``KUSTOMER_REGION``/``KUSTOMER_ORG``/``KUSTOMER_BASE_URL``."""
        from connectors.settings import Settings

        settings = Settings.from_env()
        ks = settings.kustomer
        if ks.api_key is None:
            return (
                "live Kustomer backend not configured: set KUSTOMER_API_KEY (and KUSTOMER_REGION or KUSTOMER_ORG) "
                "to run the contract against a live org"
            )
        key = ks.api_key.get_secret_value()
        restricted = os.environ.get(RESTRICTED_KEY_ENV) or None

        def credential(purpose: str, roles: Sequence[str]) -> str | None:
            return key if purpose == "full" else restricted

        where = ks.org or ks.region or "us"
        return Endpoint(
            transport=None,
            connect_options={"region": ks.region, "org": ks.org, "base_url": ks.base_url},
            credential=credential,
            source="live",
            description=f"a live Kustomer org ({where})",
            settings=settings,
            metadata={"region": ks.region or "us"},
            secrets=tuple(s for s in (key, restricted) if s),
        )

    async def prepare(self, run: ContractRun, case: ModelCase) -> dict[str, ResourceRef]:
        """CRM Klasses (provisioned in the sandbox, required live), a custom Klass, and a tagged contact."""
        from connectors.kustomer.klasses import KLASS_MODELS, klass_name

        if case.model in KLASS_MODELS:
            await self._crm_klasses(run, case.model)
        elif case.model.startswith("custom:"):
            await self._require_klass(run, klass_name(case.model))
        refs: dict[str, ResourceRef] = {}
        if "contact" in case.requires:
            cached = run.state.get("kustomer.contact")
            if not isinstance(cached, ResourceRef):
                contact = await run.create("genericContact", contact_sample(SampleContext(run.tag, 99)))
                cached = run.state["kustomer.contact"] = contact.as_ref()
            refs["contact"] = cached
        return refs

    async def _require_klass(self, run: ContractRun, name: str) -> bool:
        conn = await run.connection()
        response = await conn.proxy("GET", f"/v1/klasses/{name}", params={"pageSize": 1})
        if response.status_code == 404:
            if run.live:
                pytest.skip(f"the live org has no Klass {name!r}: run `connectors kustomer provision` first")
            return False
        assert response.status_code < 400, f"GET /v1/klasses/{name} answered {response.status_code}: {response.text}"
        return True

    async def _crm_klasses(self, run: ContractRun, model: str) -> None:
        """The three CRM Klasses (their Id attributes target each other) and the attributes of ``model``'s."""
        if run.state.get("kustomer.klasses"):
            return
        from connectors.kustomer.klasses import crm_klass_schemas

        schemas = crm_klass_schemas()
        if run.live:
            for schema in schemas.values():
                await self._require_klass(run, schema.name)
        else:
            conn = await run.connection()
            for schema in schemas.values():
                response = await conn.proxy("POST", "/v1/klasses", json=schema.klass_body())
                assert response.status_code in (200, 201), response.text
            own = schemas[model]
            response = await conn.proxy("PUT", f"/v1/metadata/{own.metadata_resource}", json=own.metadata_body())
            assert response.status_code == 200, response.text
        run.state["kustomer.klasses"] = True
