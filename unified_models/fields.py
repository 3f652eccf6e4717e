"""Field definitions: what fields a model has on a connection, standard and custom."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from unified_models._base import JSONValue, UnifiedObject

__all__ = ["FieldDefinition", "FieldOption", "FieldType"]

FieldType = Literal["text", "number", "datetime", "boolean", "select", "list.select", "url", "reference"]


class FieldOption(UnifiedObject):
    """One allowed value of a ``select`` / ``list.select`` field."""

    value: JSONValue
    label: str


class FieldDefinition(UnifiedObject):
    """A field of a unified model on one connection.

    Attributes:
        key: the unified key (``firstName``, or the custom field key used in ``custom_fields``).
        name: a human label.
        type: the unified field type.
        options: allowed values for ``select`` and ``list.select``.
        is_custom: whether the field is a provider custom attribute.
        read_only: whether writes ignore it.
        required: whether create needs it.
        reference_model: the model a ``reference`` field points at, when known.
        provider_key: the provider's own name for the field (e.g. Kustomer's ``loyaltyTierStr``).
        description: free text.
    """

    key: str = Field(min_length=1)
    name: str
    type: FieldType
    options: list[FieldOption] | None = None
    is_custom: bool = False
    read_only: bool = False
    required: bool = False
    reference_model: str | None = None
    provider_key: str | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _check(self) -> FieldDefinition:
        if self.options is not None and self.type not in ("select", "list.select"):
            raise ValueError(f"options are only allowed on select fields, not on {self.type!r}")
        return self
