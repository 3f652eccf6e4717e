"""The custom Klasses behind the CRM models, as data.

``crmOpportunity``, ``crmPipeline`` and ``crmStage`` are KObjects of custom Klasses (default names
``crm-opportunity``, ``crm-pipeline``, ``crm-stage``; a connection overrides them with
``settings["klasses"] = {"crmOpportunity": "deal", ...}``, keyed by model id or by the short names
``opportunity``/``pipeline``/``stage``). Each Klass is described here once, for the mappers (which
attribute carries which unified field) and for provisioning (which Klass and attributes to create).

Attribute names are derived from display name and type suffix exactly as Kustomer derives them
(seeds/jebbit-kustomer-integration.txt; :func:`~connectors.kustomer.custom_fields.derive_attribute_name`):
``"Close Date"`` + ``At`` -> ``closeDateAt``.

Default schemas::

    crm-opportunity  Amount Num -> amountNum            Currency Str -> currencyStr
                     Status Str (open|won|lost)         Close Date At -> closeDateAt
                     Probability Num                    Stage Id -> stageId (kobject_crm-stage)
                     Pipeline Id (kobject_crm-pipeline) Owner Id -> ownerId (user)
                     Contacts Id, multi (customer)      Companies Id, multi (company)
                     Engagements Id, multi (conversation)
    crm-pipeline     Stages Id, multi (kobject_crm-stage)
    crm-stage        Type Str (open|won|lost|unknown)   Order Num   Probability Num
                     Pipeline Id (kobject_crm-pipeline)

``target`` notation of ``Id`` attributes (matches the search ``queryContext`` names of kustomer-api.md
§2.10): a standard object is named by its resource type (``"customer"``, ``"company"``, ``"user"``,
``"conversation"``); a KObject of a Klass by ``"kobject_<klass name>"`` (``"kobject_crm-stage"``). Targets
follow the configured Klass names. ``multi: true`` marks a list-valued reference.

The KObject's ``title`` carries the unified ``name``, its ``description`` the ``description``; every other
custom attribute of the KObject is a unified custom field.

Pure data and pure helpers: nothing here does I/O (provisioning, which does, lives elsewhere).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from types import MappingProxyType
from typing import Any, Final

from connectors.errors import ConfigurationError
from connectors.kustomer.custom_fields import derive_attribute_name

__all__ = [
    "DEFAULT_KLASS_NAMES",
    "DEFAULT_KLASS_SCHEMAS",
    "KLASS_MODELS",
    "TARGET_COMPANY",
    "TARGET_CONVERSATION",
    "TARGET_CUSTOMER",
    "TARGET_USER",
    "AttributeSpec",
    "KlassSchema",
    "crm_klass_schemas",
    "klass_name",
    "klass_names",
    "klass_schema",
    "kobject_target",
]

KLASS_MODELS: Final = ("crmOpportunity", "crmPipeline", "crmStage")
"""The unified models stored as KObjects of a CRM Klass."""

DEFAULT_KLASS_NAMES: Final[Mapping[str, str]] = MappingProxyType(
    {"crmOpportunity": "crm-opportunity", "crmPipeline": "crm-pipeline", "crmStage": "crm-stage"}
)
"""Model id -> default Klass name."""

_SHORT_KEYS: Final[Mapping[str, str]] = MappingProxyType(
    {"opportunity": "crmOpportunity", "pipeline": "crmPipeline", "stage": "crmStage"}
)

TARGET_CUSTOMER: Final = "customer"
"""``target`` of an ``Id`` attribute referencing customers."""
TARGET_COMPANY: Final = "company"
"""``target`` of an ``Id`` attribute referencing companies."""
TARGET_USER: Final = "user"
"""``target`` of an ``Id`` attribute referencing users."""
TARGET_CONVERSATION: Final = "conversation"
"""``target`` of an ``Id`` attribute referencing conversations."""


def kobject_target(klass_name: str) -> str:
    """Return the ``target`` of an ``Id`` attribute referencing KObjects of ``klass_name``.

    Args:
        klass_name: e.g. ``"crm-stage"``.

    Returns:
        ``"kobject_<klass_name>"``, e.g. ``"kobject_crm-stage"``.
    """
    return f"kobject_{klass_name}"


@dataclass(frozen=True, slots=True)
class AttributeSpec:
    """One custom attribute of a Klass and the unified field it carries.

    Attributes:
        field: the unified field (snake_case Python name, e.g. ``close_date``).
        display_name: Kustomer's display name (``"Close Date"``).
        suffix: the type suffix (``"At"``).
        metadata: extra attribute metadata: ``enumeration`` (allowed ``Str`` values), ``target`` and
            ``multi`` (``Id`` attributes).
        ref_model: for ``Id`` attributes, the unified model of the referenced resources.
        name: the attribute name, derived from display name and suffix (``"closeDateAt"``).
    """

    field: str
    display_name: str
    suffix: str
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    ref_model: str | None = None
    name: str = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", derive_attribute_name(self.display_name, self.suffix))

    @property
    def multi(self) -> bool:
        """Whether the attribute holds a list (multi-valued ``Id``)."""
        return bool(self.metadata.get("multi", False))

    def property_metadata(self) -> dict[str, Any]:
        """Return the attribute's entry for Kustomer's ``properties`` metadata (``displayName`` + extras).

        Returns:
            e.g. ``{"displayName": "Stage", "target": "kobject_crm-stage"}``.
        """
        meta: dict[str, Any] = {"displayName": self.display_name}
        for key, value in self.metadata.items():
            meta[key] = list(value) if isinstance(value, tuple) else value
        return meta


@dataclass(frozen=True, slots=True)
class KlassSchema:
    """A custom Klass backing a unified model.

    Attributes:
        model: the unified model id (``crmOpportunity``).
        name: the Klass name (``crm-opportunity``), also its place in KObject URLs.
        display_name: the Klass display name.
        icon: the Klass icon (an icon name of Kustomer's icon set; UNCONFIRMED names).
        attributes: the custom attributes carrying unified fields.
    """

    model: str
    name: str
    display_name: str
    icon: str
    attributes: tuple[AttributeSpec, ...]
    by_field: Mapping[str, AttributeSpec] = dataclasses.field(init=False, repr=False, compare=False)
    attribute_names: frozenset[str] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_field", MappingProxyType({a.field: a for a in self.attributes}))
        object.__setattr__(self, "attribute_names", frozenset(a.name for a in self.attributes))

    @property
    def metadata_resource(self) -> str:
        """The ``/v1/metadata/{resource}`` name of the Klass's attribute metadata (``kobject_<name>``)."""
        return kobject_target(self.name)

    def klass_body(self) -> dict[str, Any]:
        """Return the ``POST /v1/klasses`` body creating this Klass."""
        return {"name": self.name, "displayName": self.display_name, "icon": self.icon}

    def metadata_body(self) -> dict[str, Any]:
        """Return the ``PUT /v1/metadata/kobject_<name>`` body declaring the attributes."""
        return {"properties": {a.name: a.property_metadata() for a in self.attributes}}


def _opportunity(names: Mapping[str, str]) -> KlassSchema:
    return KlassSchema(
        model="crmOpportunity",
        name=names["crmOpportunity"],
        display_name="Opportunity",
        icon="briefcase",
        attributes=(
            AttributeSpec("amount", "Amount", "Num"),
            AttributeSpec("currency", "Currency", "Str"),
            AttributeSpec("status", "Status", "Str", {"enumeration": ("open", "won", "lost")}),
            AttributeSpec("close_date", "Close Date", "At"),
            AttributeSpec("probability", "Probability", "Num"),
            AttributeSpec("stage", "Stage", "Id", {"target": kobject_target(names["crmStage"])}, "crmStage"),
            AttributeSpec(
                "pipeline", "Pipeline", "Id", {"target": kobject_target(names["crmPipeline"])}, "crmPipeline"
            ),
            AttributeSpec("owner", "Owner", "Id", {"target": TARGET_USER}, "genericUser"),
            AttributeSpec("contacts", "Contacts", "Id", {"target": TARGET_CUSTOMER, "multi": True}, "genericContact"),
            AttributeSpec("companies", "Companies", "Id", {"target": TARGET_COMPANY, "multi": True}, "genericCompany"),
            AttributeSpec(
                "engagements",
                "Engagements",
                "Id",
                {"target": TARGET_CONVERSATION, "multi": True},
                "crmEngagement",
            ),
        ),
    )


def _pipeline(names: Mapping[str, str]) -> KlassSchema:
    return KlassSchema(
        model="crmPipeline",
        name=names["crmPipeline"],
        display_name="Pipeline",
        icon="filter",
        attributes=(
            AttributeSpec(
                "stages",
                "Stages",
                "Id",
                {"target": kobject_target(names["crmStage"]), "multi": True},
                "crmStage",
            ),
        ),
    )


def _stage(names: Mapping[str, str]) -> KlassSchema:
    return KlassSchema(
        model="crmStage",
        name=names["crmStage"],
        display_name="Stage",
        icon="flag",
        attributes=(
            AttributeSpec("type", "Type", "Str", {"enumeration": ("open", "won", "lost", "unknown")}),
            AttributeSpec("order", "Order", "Num"),
            AttributeSpec("probability", "Probability", "Num"),
            AttributeSpec(
                "pipeline", "Pipeline", "Id", {"target": kobject_target(names["crmPipeline"])}, "crmPipeline"
            ),
        ),
    )


@cache
def _schemas(names: tuple[tuple[str, str], ...]) -> Mapping[str, KlassSchema]:
    by_model = dict(names)
    return MappingProxyType({s.model: s for s in (_opportunity(by_model), _pipeline(by_model), _stage(by_model))})


def klass_names(settings: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Return the Klass name of each CRM model, with the overrides of ``settings["klasses"]`` applied.

    Args:
        settings: connection settings; ``settings["klasses"]`` maps a model id (``crmOpportunity``) or a
            short name (``opportunity``) to a Klass name.

    Returns:
        Model id -> Klass name, for the three models of :data:`KLASS_MODELS`.

    Raises:
        ConfigurationError: ``settings["klasses"]`` is not a mapping of known keys to non-empty strings.
    """
    names = dict(DEFAULT_KLASS_NAMES)
    overrides = (settings or {}).get("klasses")
    if not overrides:
        return names
    if not isinstance(overrides, Mapping):
        raise ConfigurationError("settings['klasses'] must map model ids to Klass names")
    for key, value in overrides.items():
        model = _SHORT_KEYS.get(key, key)
        if model not in names:
            raise ConfigurationError(f"settings['klasses'] has an unknown key {key!r}; use one of {', '.join(names)}")
        if not isinstance(value, str) or not value:
            raise ConfigurationError(f"settings['klasses'][{key!r}] must be a non-empty Klass name")
        names[model] = value
    return names


def klass_name(model: str, settings: Mapping[str, Any] | None = None) -> str:
    """Return the Klass holding the KObjects of a unified model.

    Args:
        model: a CRM model id (``crmStage``) or a custom model id (``custom:order`` -> ``order``).
        settings: connection settings (``settings["klasses"]`` overrides the CRM Klass names).

    Returns:
        The Klass name (its place in ``/v1/klasses/{name}``).

    Raises:
        KeyError: ``model`` is neither a CRM model nor ``custom:<klass>``.
        ConfigurationError: invalid ``settings["klasses"]``.
    """
    if model.startswith("custom:") and len(model) > len("custom:"):
        return model[len("custom:") :]
    return klass_names(settings)[model]


def crm_klass_schemas(names: Mapping[str, str] | None = None) -> Mapping[str, KlassSchema]:
    """Return the schemas of the three CRM Klasses for the given Klass names (cached).

    Args:
        names: model id -> Klass name (see :func:`klass_names`); defaults to :data:`DEFAULT_KLASS_NAMES`.

    Returns:
        Model id -> :class:`KlassSchema`.
    """
    merged = {**DEFAULT_KLASS_NAMES, **(names or {})}
    return _schemas(tuple(sorted(merged.items())))


def klass_schema(model: str, settings: Mapping[str, Any] | None = None) -> KlassSchema:
    """Return the schema of the Klass backing ``model`` under a connection's settings.

    Args:
        model: ``crmOpportunity``, ``crmPipeline`` or ``crmStage``.
        settings: connection settings (``settings["klasses"]`` overrides the Klass names).

    Returns:
        The :class:`KlassSchema`.

    Raises:
        KeyError: ``model`` is not one of :data:`KLASS_MODELS`.
        ConfigurationError: invalid ``settings["klasses"]``.
    """
    overrides = (settings or {}).get("klasses")
    schemas = crm_klass_schemas(klass_names(settings) if overrides else None)
    return schemas[model]


DEFAULT_KLASS_SCHEMAS: Final[Mapping[str, KlassSchema]] = crm_klass_schemas()
"""The CRM Klass schemas under the default names, by model id."""
