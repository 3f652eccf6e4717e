"""The mapping contract: how a connector turns provider objects into unified models and back.

A :class:`Mapper` is a pair of pure functions for one unified model of one connector. It never does I/O:
it receives the provider object exactly as the API returns it (for Kustomer, a JSON:API resource
``{type, id, attributes, relationships, links}``) and a :class:`MappingContext`, and returns a unified
model; or the reverse, a unified model to the provider's flat request body.

:class:`MappingExtension` objects run after a mapper, in registration order. They let a plugin add a
field to a mapping without replacing the mapper (e.g. copy a provider attribute into ``custom_fields``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from unified_models import UnifiedResource

__all__ = [
    "FieldMapping",
    "Mapper",
    "MappingContext",
    "MappingExtension",
]


@dataclass(frozen=True, slots=True)
class FieldMapping:
    """Per-connection mapping of unified custom field keys to provider custom attributes.

    Attributes:
        fields: unified key -> provider attribute name (e.g. ``{"loyaltyTier": "loyaltyTierStr"}``).
        passthrough: when true, provider custom attributes without a mapping are exposed under their own
            provider name; when false they are dropped.
    """

    fields: Mapping[str, str] = field(default_factory=dict)
    passthrough: bool = True

    def provider_key(self, unified_key: str) -> str:
        """Return the provider attribute for a unified key (itself when unmapped and passthrough)."""
        mapped = self.fields.get(unified_key)
        if mapped is not None:
            return mapped
        if self.passthrough:
            return unified_key
        raise KeyError(unified_key)

    def unified_key(self, provider_key: str) -> str | None:
        """Return the unified key for a provider attribute, or ``None`` when it is not exposed."""
        for unified, provider in self.fields.items():
            if provider == provider_key:
                return unified
        return provider_key if self.passthrough else None


@dataclass(frozen=True, slots=True)
class MappingContext:
    """Everything a mapper may know besides the object itself. Immutable; no clients, no I/O.

    Attributes:
        connector_id: the connector (``kustomer``).
        model: the unified model id being mapped.
        field_mapping: the connection's custom field mapping for this model.
        settings: connector settings that shape the mapping (e.g. Klass names, channel -> type table).
        include_raw: whether to attach the provider object as ``raw``.
        current: on updates, the provider object as it is now (for fields that must be read, modified and
            written whole, such as a name split into first and last name, or a link the provider drops
            when it is omitted). ``None`` on creates and reads.
    """

    connector_id: str
    model: str
    field_mapping: FieldMapping = field(default_factory=FieldMapping)
    settings: Mapping[str, Any] = field(default_factory=dict)
    include_raw: bool = False
    current: Any = None


@runtime_checkable
class Mapper(Protocol):
    """Maps one unified model for one connector. Both methods are pure functions."""

    #: The unified model id this mapper handles (``genericContact``).
    model: str

    def to_unified(self, resource: Any, context: MappingContext) -> UnifiedResource:
        """Map a provider object to the unified model.

        ``resource`` is the object exactly as the API returns it: a ``dict``, or the connector's own
        parsed wire model (connectors parse pages straight into wire models for speed).

        Raises:
            connectors.errors.MappingError: naming the field that could not be mapped.
        """
        ...

    def to_provider(self, obj: UnifiedResource, context: MappingContext) -> dict[str, Any]:
        """Map a unified object to the provider's request body.

        Only the fields in ``obj.model_fields_set`` are written, so a partial object gives PATCH
        semantics. Read-only fields are ignored.

        Raises:
            connectors.errors.MappingError: naming the field that could not be mapped.
        """
        ...


class MappingExtension:
    """Adds to an existing mapping. Subclass and override any hook; all default to no change."""

    def before_to_provider(self, obj: UnifiedResource, context: MappingContext) -> UnifiedResource:
        """Return ``obj``, possibly changed, before the mapper writes it.

        Use it to undo what :meth:`after_to_unified` added (e.g. drop a read-only value you exposed in
        ``custom_fields`` so the mapper does not try to write it).
        """
        return obj

    def after_to_unified(self, obj: UnifiedResource, resource: Any, context: MappingContext) -> UnifiedResource:
        """Return ``obj``, possibly changed (use ``obj.model_copy(update=...)``), after a read mapping."""
        return obj

    def after_to_provider(self, body: dict[str, Any], obj: UnifiedResource, context: MappingContext) -> dict[str, Any]:
        """Return the provider request body, possibly changed, after a write mapping."""
        return body
