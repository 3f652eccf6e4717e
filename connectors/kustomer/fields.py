"""Field definitions of a unified model on a Kustomer connection: standard fields plus custom attributes.

Standard fields come from the unified model (type, required, read-only, referenced model). Custom fields
come from Kustomer's custom-attribute metadata (``GET /v1/metadata/{resource}``): each attribute is exposed
under the unified key the connection's field mapping gives it, typed by its name suffix (``Str`` with an
enumeration becomes a ``select`` with options). For the CRM models, the attributes the Klass schema uses for
standard fields are not repeated as custom fields.

Creating a field derives the attribute name exactly as Kustomer does (``"Assigned User"`` + ``Id`` ->
``assignedUserId``), declares it in the metadata, and — when a ``key`` is given — maps that unified key to
the attribute in the connection's field mapping.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import anyio.to_thread

from connectors.errors import MappingError
from connectors.kustomer.custom_fields import (
    SUFFIXES,
    CustomAttributeError,
    derive_attribute_name,
    parse_attribute_name,
)
from connectors.kustomer.klasses import KLASS_MODELS, klass_name, klass_schema
from unified_models import FieldDefinition, FieldOption, FieldType, ResourceRef, model_class
from unified_models._base import UnifiedResource

if TYPE_CHECKING:
    from connectors.kustomer.connector import KustomerConnector

__all__ = ["KustomerFields", "metadata_resource"]

_RESOURCES: Final = {
    "genericContact": "customer",
    "genericCompany": "company",
    "genericUser": "user",
    "genericWorkspace": "team",
    "crmEngagement": "conversation",
}
_CREATE_SUFFIX: Final[dict[str, str]] = {
    "text": "Str",
    "number": "Num",
    "datetime": "At",
    "boolean": "Bool",
    "url": "Url",
    "select": "Str",
    "reference": "Id",
}
_BASE_FIELDS: Final = frozenset({"custom_fields", "raw"})


def metadata_resource(model: str, settings: dict[str, Any] | Any) -> str:
    """The ``/v1/metadata/{resource}`` name holding a model's custom attributes."""
    if model in _RESOURCES:
        return _RESOURCES[model]
    return f"kobject_{klass_name(model, settings)}"


def _field_type(annotation: Any) -> tuple[FieldType, str | None]:
    """Unified field type (and referenced model marker) of a model annotation."""
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _field_type(inner[0]) if inner else ("text", None)
    if origin is typing.Annotated:
        return _field_type(args[0])
    if origin is typing.Literal:
        return "select", None
    if origin is list:
        item_type, ref = _field_type(args[0]) if args else ("text", None)
        return ("reference", ref) if item_type == "reference" else ("list.select", None)
    if isinstance(annotation, type):
        if issubclass(annotation, ResourceRef):
            return "reference", "*"
        if issubclass(annotation, bool):
            return "boolean", None
        if issubclass(annotation, int | float):
            return "number", None
        from datetime import date, datetime

        if issubclass(annotation, datetime | date):
            return "datetime", None
    return "text", None


def _options(annotation: Any) -> list[FieldOption] | None:
    for arg in [annotation, *typing.get_args(annotation)]:
        if typing.get_origin(arg) is typing.Literal:
            return [FieldOption(value=v, label=str(v)) for v in typing.get_args(arg)]
    return None


_REF_MODELS: Final = {
    "company": "genericCompany",
    "companies": "genericCompany",
    "contacts": "genericContact",
    "owner": "genericUser",
    "users": "genericUser",
    "members": "genericUser",
    "stage": "crmStage",
    "stages": "crmStage",
    "pipeline": "crmPipeline",
    "engagements": "crmEngagement",
    "opportunities": "crmOpportunity",
    "contact": "genericContact",
}


def standard_fields(model: str) -> list[FieldDefinition]:
    """The unified model's own fields, typed (no I/O)."""
    cls: type[UnifiedResource] = model_class(model)
    out = []
    for name, info in cls.model_fields.items():
        if name in _BASE_FIELDS:
            continue
        kind, ref = _field_type(info.annotation)
        options = _options(info.annotation) if kind in ("select", "list.select") else None
        if kind == "list.select" and options is None:
            kind = "text"
        out.append(
            FieldDefinition(
                key=info.alias or name,
                name=name.replace("_", " ").capitalize(),
                type=kind,
                options=options,
                is_custom=False,
                read_only=name in cls.READ_ONLY_FIELDS,
                required=info.is_required(),
                reference_model=_REF_MODELS.get(name) if ref else None,
                description=(info.description or None),
            )
        )
    return out


class KustomerFields:
    """``connection.fields(model)`` for Kustomer."""

    def __init__(self, connector: KustomerConnector, model: str) -> None:
        self.connector = connector
        self.model = model
        self.resource = metadata_resource(model, connector.session.connector_settings)

    def _schema_attributes(self) -> frozenset[str]:
        if self.model in KLASS_MODELS:
            return klass_schema(self.model, self.connector.session.connector_settings).attribute_names
        return frozenset()

    async def _properties(self) -> dict[str, dict[str, Any]]:
        body = await self.connector.client.json("GET", f"/v1/metadata/{self.resource}")
        data = (body or {}).get("data") or {}
        properties = (data.get("attributes") or {}).get("properties") or {}
        return {str(k): dict(v) for k, v in properties.items() if isinstance(v, dict)}

    async def list(self) -> list[FieldDefinition]:
        """Standard fields, then custom attributes (typed by suffix, mapped to unified keys)."""
        fields = standard_fields(self.model)
        mapping = self.connector.session.field_mapping(self.model)
        skip = self._schema_attributes()
        for attr, meta in sorted((await self._properties()).items()):
            if attr in skip or meta.get("deletedAt"):
                continue
            key = mapping.unified_key(attr)
            if key is None:
                continue
            try:
                _, suffix = parse_attribute_name(attr)
            except CustomAttributeError:
                continue
            kind: FieldType = SUFFIXES[suffix]
            enumeration = meta.get("enumeration")
            options = None
            if isinstance(enumeration, list) and enumeration and kind == "text":
                kind = "select"
                options = [FieldOption(value=v, label=str(v)) for v in enumeration]
            target = meta.get("target")
            fields.append(
                FieldDefinition(
                    key=key,
                    name=str(meta.get("displayName") or attr),
                    type=kind,
                    options=options,
                    is_custom=True,
                    provider_key=attr,
                    reference_model=_target_model(target) if kind == "reference" else None,
                    description=meta.get("description"),
                )
            )
        return fields

    async def create(
        self, display_name: str, type: str, *, options: Sequence[str] | None = None, key: str | None = None
    ) -> FieldDefinition:
        """Declare a custom attribute named as Kustomer names it, and map ``key`` to it when given.

        Raises:
            MappingError: a bad display name, type or option list (nothing is sent).
        """
        suffix = _CREATE_SUFFIX.get(type)
        if suffix is None:
            raise MappingError(
                f"Kustomer custom attributes cannot have type {type!r}; use {', '.join(_CREATE_SUFFIX)}",
                model=self.model,
                field="type",
            )
        if type == "reference":
            raise MappingError(
                "reference attributes need a target object; create them in Kustomer or with provision_klass",
                model=self.model,
                field="type",
            )
        if type == "select" and not options:
            raise MappingError("a select field needs options", model=self.model, field="options")
        if options and type != "select":
            raise MappingError("options are only allowed on select fields", model=self.model, field="options")
        try:
            attr = derive_attribute_name(display_name, suffix)
        except (CustomAttributeError, ValueError) as exc:
            raise MappingError(str(exc), model=self.model, field="displayName") from None
        meta: dict[str, Any] = {"displayName": display_name, "type": suffix.lower()}
        if options:
            meta["enumeration"] = list(options)
        await self.connector.client.json("PUT", f"/v1/metadata/{self.resource}", json_body={"properties": {attr: meta}})
        unified_key = key or attr
        if key is not None:
            await self._map_key(key, attr)
        return FieldDefinition(
            key=unified_key,
            name=display_name,
            type=type,
            options=[FieldOption(value=o, label=o) for o in options] if options else None,
            is_custom=True,
            provider_key=attr,
        )

    async def _map_key(self, key: str, attr: str) -> None:
        session = self.connector.session
        settings = dict(session.record.settings)
        mappings = {k: dict(v) for k, v in (settings.get("field_mappings") or {}).items()}
        model_map = mappings.setdefault(self.model, {})
        target = model_map.setdefault("fields", {}) if "fields" in model_map else model_map
        target[key] = attr
        settings["field_mappings"] = mappings
        store = session.store
        if store is not None:
            record = await anyio.to_thread.run_sync(lambda: store.update(session.record.id, settings=settings))
            session.record = record


def _target_model(target: Any) -> str | None:
    if not isinstance(target, str):
        return None
    return {"customer": "genericContact", "company": "genericCompany", "user": "genericUser"}.get(
        target, "crmEngagement" if target == "conversation" else None
    )
