"""The shared mapping of KObjects (objects of custom Klasses) to unified models.

Common to the CRM models (``crmOpportunity``, ``crmPipeline``, ``crmStage``) and custom objects
(``custom:<klass>``):

* the KObject ``title`` carries the unified name (``name``, or ``title`` for custom objects). Kustomer
  requires a title, so creating without one, or clearing it, is a :class:`~connectors.errors.MappingError`.
* ``description`` <-> ``description`` (when the unified model has one; otherwise it stays in ``raw``).
* ``externalId`` is not a field of the CRM models and stays in ``raw``.
* ``Id`` attributes referencing engagements (``engagementsId``) store engagement ids as given: conversation
  ids or ``note:<id>`` (each checked to wrap a 24-hex-digit id); other ``Id`` values must be object ids.

CRM models (:class:`CrmKObjectMapper`): every unified field other than name/description is a custom
attribute of the model's Klass schema (:mod:`connectors.kustomer.klasses`, Klass names from
``settings["klasses"]``). Values are coerced by suffix as all custom attributes are (``Num`` -> int or
float, ``At`` -> datetime...); ``Id`` attributes hold ids (a list when ``multi``) and read as references.
Errors on those attributes name ``attributes.custom.<attribute>``. The KObject's other custom attributes
are the model's ``custom_fields``; a custom field may not write a schema attribute.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

from pydantic.alias_generators import to_camel

from connectors.errors import MappingError
from connectors.kustomer.klasses import AttributeSpec, KlassSchema, klass_schema
from connectors.kustomer.mappers._common import (
    KustomerMapper,
    Sources,
    View,
    coerce_custom,
    custom_value,
    opt_mapping,
    read_custom,
    ref_id,
    ref_ids,
    ref_value,
    write_custom,
)
from connectors.kustomer.mappers.engagement import check_engagement_ref
from connectors.mapping import MappingContext
from unified_models import UnifiedResource

__all__ = ["CrmKObjectMapper", "write_title"]

U = TypeVar("U", bound=UnifiedResource)


def write_title(
    body: dict[str, Any], value: str | None, written: bool, is_create: bool, model: str, field: str
) -> None:
    """Write a KObject's ``title`` (required by Kustomer on create; it cannot be cleared).

    Raises:
        MappingError: creating without a title, or writing ``None``; ``field`` names the unified field.
    """
    if written or is_create:
        if not value:
            raise MappingError("a KObject needs a title", model=model, field=field)
        body["title"] = value


class CrmKObjectMapper(KustomerMapper[U]):
    """Maps KObjects of a CRM Klass to a unified CRM model, driven by the Klass schema.

    Attributes:
        read_converters: unified field -> function applied to a non-``None`` value read from Kustomer
            (e.g. datetime -> date for ``close_date``).
    """

    read_converters: ClassVar[Mapping[str, Callable[[Any], Any]]] = {}
    field_paths: ClassVar = {"name": "attributes.title", "custom_fields": "attributes.custom"}

    def schema(self, context: MappingContext) -> KlassSchema:
        """The Klass schema of this model under the connection's settings."""
        return klass_schema(self.model, context.settings)

    def read(self, view: View, context: MappingContext, sources: Sources) -> dict[str, Any]:
        """Read title, description and schema attributes; other custom attributes are custom fields."""
        schema = self.schema(context)
        a = view.attributes
        custom = opt_mapping(a, "custom", self.model)
        data: dict[str, Any] = {"name": a.get("title")}
        if "description" in self.unified_type.model_fields:
            data["description"] = a.get("description")
        for spec in schema.attributes:
            data[spec.field] = self._read_attribute(spec, custom.get(spec.name), sources)
        data["custom_fields"] = read_custom(a, context.field_mapping, self.model, exclude=schema.attribute_names)
        return data

    def _read_attribute(self, spec: AttributeSpec, value: Any, sources: Sources) -> Any:
        path = f"attributes.custom.{spec.name}"
        if spec.ref_model is not None:
            return ref_value(value, spec.ref_model, self.model, path, sources, spec.field, multi=spec.multi)
        sources[spec.field] = path
        try:
            coerced = coerce_custom(spec.name, value)
        except ValueError as exc:
            raise MappingError(str(exc), model=self.model, field=path) from exc
        convert = self.read_converters.get(spec.field)
        return coerced if convert is None or coerced is None else convert(coerced)

    def write(self, obj: U, fields: set[str], current: View | None, context: MappingContext) -> dict[str, Any]:
        """Build a KObject create/update body: title, description and ``custom``."""
        schema = self.schema(context)
        body: dict[str, Any] = {}
        write_title(body, getattr(obj, "name", None), "name" in fields, current is None, self.model, "name")
        if "description" in fields:
            body["description"] = getattr(obj, "description", None)
        custom: dict[str, Any] = {}
        for spec in schema.attributes:
            if spec.field in fields:
                custom[spec.name] = self._write_attribute(spec, getattr(obj, spec.field))
        if "custom_fields" in fields and obj.custom_fields:
            reserved = {spec.name: spec.field for spec in schema.attributes}
            custom.update(write_custom(obj.custom_fields, context.field_mapping, self.model, reserved=reserved))
        if custom:
            body["custom"] = custom
        return body

    def _write_attribute(self, spec: AttributeSpec, value: Any) -> Any:
        field = to_camel(spec.field)
        if spec.ref_model is not None:
            value = ref_ids(value) if spec.multi else ref_id(value)
            if spec.ref_model == "crmEngagement":  # conversation ids only (the attribute targets conversations)
                return [check_engagement_ref(ref, self.model, f"{field}.{i}") for i, ref in enumerate(value or ())]
        return custom_value(spec.name, value, self.model, field)
