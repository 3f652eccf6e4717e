"""The Kustomer connector, and its pure mapping functions.

Map Kustomer JSON to unified models and back without a connection, a client or any I/O::

    from connectors.kustomer import to_kustomer, to_unified

    contact = to_unified("genericContact", response_json)           # a resource, or {"data": {...}}
    body = to_kustomer("genericContact", {"firstName": "Ada"}, current=customer_json)

Both go through :func:`connectors.registry.default_registry`, so plugin mappers and mapping extensions
apply. Names are imported lazily so ``import connectors.kustomer`` stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connectors.kustomer.mappers.engagement import engagement_id, parse_engagement_id
    from connectors.mapping import FieldMapping
    from unified_models import UnifiedResource

__all__ = ["engagement_id", "parse_engagement_id", "to_kustomer", "to_unified"]

_LAZY = {
    "engagement_id": "connectors.kustomer.mappers.engagement",
    "parse_engagement_id": "connectors.kustomer.mappers.engagement",
}

CONNECTOR_ID = "kustomer"


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'connectors.kustomer' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Runtime:
    """What the mapping functions need, imported on first use (so importing this package stays cheap)."""

    def __init__(self) -> None:
        from connectors.kustomer.mappers._common import unwrap
        from connectors.mapping import FieldMapping, MappingContext
        from connectors.registry import default_registry

        self.unwrap = unwrap
        self.field_mapping_type = FieldMapping
        self.default_field_mapping = FieldMapping()
        self.context_type = MappingContext
        self.registry = default_registry  # called per use: it is cached, and tests may clear it

    def field_mapping(self, value: Mapping[str, str] | FieldMapping | None) -> FieldMapping:
        if value is None:
            return self.default_field_mapping
        if isinstance(value, self.field_mapping_type):
            return value
        return self.field_mapping_type(fields=dict(value))


_runtime: _Runtime | None = None


def _rt() -> _Runtime:
    global _runtime
    if _runtime is None:
        _runtime = _Runtime()
    return _runtime


_NO_SETTINGS: Mapping[str, Any] = {}


def to_unified(
    model: str,
    resource: Mapping[str, Any],
    *,
    field_mapping: Mapping[str, str] | FieldMapping | None = None,
    settings: Mapping[str, Any] | None = None,
    include_raw: bool = False,
) -> UnifiedResource:
    """Map a Kustomer resource, exactly as the API returns it, to a unified model.

    Args:
        model: the unified model id (``genericContact``, ``crmEngagement``, ``custom:<klass>``...).
        resource: the JSON:API resource ``{type, id, attributes, relationships, links}``, or a whole
            single-resource envelope ``{"data": {...}}``; custom attributes included.
        field_mapping: unified custom field key -> Kustomer attribute (``{"tier": "loyaltyTierStr"}``),
            or a :class:`~connectors.mapping.FieldMapping`; unmapped attributes pass through under their
            own names.
        settings: connection settings that shape the mapping (``klasses``, ``engagement``).
        include_raw: attach the resource as received as ``raw``.

    Returns:
        The unified model.

    Raises:
        connectors.errors.MappingError: naming the attribute path that could not be mapped.
        connectors.errors.PluginError: no mapper is registered for ``model``.
    """
    rt = _rt()
    context = rt.context_type(
        connector_id=CONNECTOR_ID,
        model=model,
        field_mapping=rt.field_mapping(field_mapping),
        settings=settings or _NO_SETTINGS,
        include_raw=include_raw,
    )
    return rt.registry().to_unified(rt.unwrap(resource), context)


def to_kustomer(
    model: str,
    obj: UnifiedResource | Mapping[str, Any],
    *,
    field_mapping: Mapping[str, str] | FieldMapping | None = None,
    settings: Mapping[str, Any] | None = None,
    current: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Map a unified object to Kustomer's flat request body.

    Only the fields that were set are written: pass a dict (``{"firstName": "Ada"}``), or an object built
    with :func:`unified_models.partial`, for PATCH semantics.

    Args:
        model: the unified model id.
        obj: the unified object, or its JSON (camelCase or snake_case keys). A dict is validated with the
            model (with :func:`unified_models.partial` of it when ``current`` is given, i.e. an update).
        field_mapping: as for :func:`to_unified`.
        settings: as for :func:`to_unified`.
        current: on an update, the Kustomer resource as it is now (resource or envelope); fields that must
            be written whole (a name split in two, the customer's company link) are completed from it.

    Returns:
        The request body (attributes at the top level, relationships by id).

    Raises:
        connectors.errors.MappingError: ``obj`` is invalid for the model, or a field cannot be written
            (e.g. a custom field whose value does not fit its attribute's type).
        connectors.errors.PluginError: no mapper is registered for ``model``.
    """
    rt = _rt()
    unified = obj if not isinstance(obj, Mapping) else _validate(model, obj, partial_update=current is not None)
    context = rt.context_type(
        connector_id=CONNECTOR_ID,
        model=model,
        field_mapping=rt.field_mapping(field_mapping),
        settings=settings or _NO_SETTINGS,
        current=None if current is None else rt.unwrap(current),
    )
    return rt.registry().to_provider(unified, context)


def _validate(model: str, data: Mapping[str, Any], *, partial_update: bool) -> UnifiedResource:
    from pydantic import ValidationError

    from connectors.errors import MappingError
    from unified_models import CUSTOM_PREFIX, model_class, partial

    try:
        cls = model_class(model)
    except KeyError as exc:
        raise MappingError(str(exc.args[0]), model=model) from None
    values = dict(data)
    if model.startswith(CUSTOM_PREFIX) and "objectType" not in values and "object_type" not in values:
        values["object_type"] = model[len(CUSTOM_PREFIX) :]
    try:
        return (partial(cls) if partial_update else cls).model_validate(values)
    except ValidationError as exc:
        err = exc.errors(include_url=False, include_input=False, include_context=False)[0]
        field = ".".join(str(part) for part in err["loc"]) or None
        raise MappingError(err["msg"], model=model, field=field) from exc
