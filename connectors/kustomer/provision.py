"""Create the Klasses and attributes the CRM models need (and custom Klasses of your own), idempotently.

``provision_crm(connection)`` makes sure the three CRM Klasses exist (``crm-opportunity``,
``crm-pipeline``, ``crm-stage`` by default; :mod:`connectors.kustomer.klasses` describes them) and that every
attribute they use is declared in the Klass's custom-attribute metadata, following Kustomer's naming rule
(``"Close Date"`` + ``At`` -> ``closeDateAt``; seeds/jebbit-kustomer-integration.txt). It reports what existed
and what it created; a second run creates nothing. Klasses come first, metadata second, because an ``Id``
attribute's ``target`` must name an existing Klass.

``provision_klass(connection, name, display_name, attributes)`` does the same for a Klass of your own, which
``connection.resources("custom:<name>")`` then reads and writes.

``seed_demo_crm(connection)`` fills a fresh org with a small sales pipeline (the embedded demo uses it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from connectors.errors import ConfigurationError, UnsupportedOperationError
from connectors.kustomer.custom_fields import SUFFIX_FOR_TYPE
from connectors.kustomer.klasses import KLASS_MODELS, AttributeSpec, KlassSchema, klass_schema

if TYPE_CHECKING:
    from connectors.kustomer.client import KustomerClient
    from connectors.runtime.connection import Connection

__all__ = ["ProvisionReport", "provision_crm", "provision_klass", "seed_demo_crm"]

_TYPE_SUFFIX: dict[str, str] = {**{str(k): v for k, v in SUFFIX_FOR_TYPE.items()}, "paragraph": "Txt", "select": "Str"}


@dataclass
class ProvisionReport:
    """What provisioning found and did.

    Attributes:
        klasses_created: Klass names created now.
        klasses_existing: Klass names that already existed.
        attributes_created: Klass name -> attribute names declared now.
        attributes_existing: Klass name -> attribute names already declared.
    """

    klasses_created: list[str] = field(default_factory=list)
    klasses_existing: list[str] = field(default_factory=list)
    attributes_created: dict[str, list[str]] = field(default_factory=dict)
    attributes_existing: dict[str, list[str]] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        """Whether anything was created."""
        return bool(self.klasses_created or any(self.attributes_created.values()))

    def lines(self) -> list[str]:
        """A human summary, one line per Klass."""
        out = []
        for name in [*self.klasses_created, *self.klasses_existing]:
            state = "created" if name in self.klasses_created else "exists"
            made = self.attributes_created.get(name, [])
            kept = self.attributes_existing.get(name, [])
            out.append(
                f"Klass {name}: {state}; attributes created: {', '.join(made) or 'none'}; already there: {len(kept)}"
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (includes ``lines``)."""
        return {
            "klassesCreated": self.klasses_created,
            "klassesExisting": self.klasses_existing,
            "attributesCreated": self.attributes_created,
            "attributesExisting": self.attributes_existing,
            "changed": self.changed,
            "lines": self.lines(),
        }


def _client(connection: Connection) -> KustomerClient:
    client = getattr(connection.connector, "client", None)
    if client is None or connection.info.connector_id != "kustomer":
        raise UnsupportedOperationError("provisioning is Kustomer-specific", operation="klasses::provision")
    return client  # type: ignore[no-any-return]


async def _existing_klasses(client: KustomerClient) -> set[str]:
    names: set[str] = set()
    page = 1
    while True:
        body = await client.json("GET", "/v1/klasses", params={"page": page, "pageSize": 100})
        for item in body.get("data") or []:
            name = (item.get("attributes") or {}).get("name")
            if isinstance(name, str):
                names.add(name)
        if not (body.get("links") or {}).get("next"):
            return names
        page += 1


async def _ensure(client: KustomerClient, schemas: Sequence[KlassSchema], report: ProvisionReport) -> None:
    existing = await _existing_klasses(client)
    for schema in schemas:
        if schema.name in existing:
            report.klasses_existing.append(schema.name)
        else:
            await client.json("POST", "/v1/klasses", json_body=schema.klass_body(), idempotent=False)
            report.klasses_created.append(schema.name)
    for schema in schemas:
        body = await client.json("GET", f"/v1/metadata/{schema.metadata_resource}")
        properties = ((body or {}).get("data") or {}).get("attributes", {}).get("properties") or {}
        missing = [a for a in schema.attributes if a.name not in properties]
        report.attributes_existing[schema.name] = sorted(a.name for a in schema.attributes if a.name in properties)
        report.attributes_created[schema.name] = [a.name for a in missing]
        if missing:
            payload = {"properties": {a.name: a.property_metadata() for a in missing}}
            await client.json("PUT", f"/v1/metadata/{schema.metadata_resource}", json_body=payload)


async def provision_crm(connection: Connection, *, models: Iterable[str] | None = None) -> ProvisionReport:
    """Create the CRM Klasses and their attributes where missing (a second run creates nothing).

    Args:
        connection: a Kustomer connection allowed ``klasses::provision``.
        models: a subset of ``crmOpportunity``, ``crmPipeline``, ``crmStage`` (default: all three).

    Raises:
        ConfigurationError: an unknown model.
        InsufficientPermissionsError: the credential cannot create Klasses or metadata.
    """
    connection.require("klasses::provision")
    chosen = list(models or KLASS_MODELS)
    unknown = [m for m in chosen if m not in KLASS_MODELS]
    if unknown:
        raise ConfigurationError(f"not CRM models: {', '.join(unknown)}; use {', '.join(KLASS_MODELS)}")
    settings = connection.session.connector_settings
    schemas = [klass_schema(model, settings) for model in chosen]
    report = ProvisionReport()
    await _ensure(_client(connection), schemas, report)
    return report


def custom_klass_schema(name: str, display_name: str, attributes: Sequence[tuple[str, str]]) -> KlassSchema:
    """Describe a Klass of your own.

    Args:
        name: the Klass name (``order``): lower-case letters, digits and dashes.
        display_name: its display name (``Order``).
        attributes: ``(display name, type)`` pairs; types: text, paragraph, number, datetime, boolean, url,
            select.

    Raises:
        ConfigurationError: a bad name or type (nothing is sent).
    """
    import re

    if not re.fullmatch(r"[a-z][a-z0-9-]{0,62}", name):
        raise ConfigurationError(f"Klass name must be lower-case letters, digits and dashes, got {name!r}")
    specs = []
    for display, kind in attributes:
        suffix = _TYPE_SUFFIX.get(kind)
        if suffix is None:
            raise ConfigurationError(f"attribute {display!r}: unknown type {kind!r}; use {', '.join(_TYPE_SUFFIX)}")
        specs.append(AttributeSpec(field=display, display_name=display, suffix=suffix))
    return KlassSchema(
        model=f"custom:{name}", name=name, display_name=display_name, icon="box", attributes=tuple(specs)
    )


async def provision_klass(
    connection: Connection, name: str, display_name: str, attributes: Sequence[tuple[str, str]] = ()
) -> ProvisionReport:
    """Create a Klass of your own and its attributes where missing (idempotent).

    Raises:
        ConfigurationError: a bad name or attribute type.
    """
    connection.require("klasses::provision")
    schema = custom_klass_schema(name, display_name, attributes)
    report = ProvisionReport()
    await _ensure(_client(connection), [schema], report)
    return report


async def seed_demo_crm(connection: Connection) -> dict[str, int]:
    """Create a demo pipeline ("Sales", five stages) and a dozen opportunities, unless a pipeline exists.

    Opportunities reference existing contacts, companies and users of the org. Returns what was created.
    """
    pipelines = connection.resources("crmPipeline")
    if (await pipelines.list(limit=1)).data:
        return {"pipelines": 0, "stages": 0, "opportunities": 0}
    stages_res = connection.resources("crmStage")
    spec = [
        ("Qualification", "open", 10),
        ("Proposal", "open", 40),
        ("Negotiation", "open", 70),
        ("Closed Won", "won", 100),
        ("Closed Lost", "lost", 0),
    ]
    stages = [
        await stages_res.create({"name": name, "type": kind, "order": order, "probability": probability})
        for order, (name, kind, probability) in enumerate(spec)
    ]
    pipeline = await pipelines.create({"name": "Sales", "stages": [s.as_ref() for s in stages]})
    for stage in stages:
        await stages_res.update(stage.id or "", {"pipeline": pipeline.as_ref()})
    contacts = (await connection.resources("genericContact").list(limit=12)).data
    companies = (await connection.resources("genericCompany").list(limit=12)).data
    users = (await connection.resources("genericUser").list(limit=5, filters={"userType": "user"})).data
    created = 0
    products = ("Platform licence", "Support plan", "Onboarding", "Expansion seats")
    for index, contact in enumerate(contacts):
        stage = stages[index % len(stages)]
        status = {"won": "won", "lost": "lost"}.get(str(getattr(stage, "type", "open")), "open")
        account = getattr(companies[index % len(companies)], "name", "Deal") if companies else "Deal"
        body: dict[str, Any] = {
            "name": f"{account} - {products[index % len(products)]}",
            "amount": float(1000 * (index + 1)),
            "currency": "USD",
            "status": status,
            "probability": float(getattr(stage, "probability", 0) or 0),
            "stage": stage.as_ref(),
            "pipeline": pipeline.as_ref(),
            "contacts": [contact.as_ref()],
        }
        if companies:
            body["companies"] = [companies[index % len(companies)].as_ref()]
        if users:
            body["owner"] = users[index % len(users)].as_ref()
        await connection.resources("crmOpportunity").create(body)
        created += 1
    return {"pipelines": 1, "stages": len(stages), "opportunities": created}
