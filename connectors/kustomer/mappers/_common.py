"""What every Kustomer mapper shares: one implementation of each mapping rule.

**Input.** A mapper reads a Kustomer resource as plain JSON: the dict the API returned (``{type, id,
attributes, relationships, links}``), a single-resource envelope ``{"data": {...}}``, or a parsed wire
model from :mod:`connectors.kustomer.wire` (read through a shallow dict view, see :func:`view_of`). The
reader is lenient where real orgs produce odd data (missing attributes, ``null`` lists, unknown
attributes) and strict where the mapping needs a value: a wrongly typed value becomes a
:class:`~connectors.errors.MappingError` whose ``field`` is the attribute path
(``attributes.emails.0.email``), never a pydantic ``ValidationError`` or a ``TypeError``/``KeyError``.
Values the mapper only passes on are checked by the unified model, and its errors are reported at the
wire path the value came from (:meth:`KustomerMapper.build`). Reading plain dicts is the fast path:
``json.loads`` + this reader + one validation of the unified model costs about 2.6x the ``json.loads``
of a 2 KB customer (parsing into wire models first is slower than ``json.loads``).

**Common fields.** ``id`` <- ``id``; ``created_at``/``updated_at`` <- ``createdAt``/``updatedAt`` (ISO
8601, read as aware UTC datetimes); with ``context.include_raw``, ``raw`` = the resource as received
(the dict; a wire model dumped with ``model_dump(mode="json", by_alias=True, exclude_unset=True)``).

**Writes** produce Kustomer's flat request body. Only the fields in ``obj.model_fields_set`` are written
(objects of :func:`unified_models.partial` classes give PATCH semantics); read-only fields (``id``,
``created_at``, ``updated_at``, ``raw``, and each model's ``READ_ONLY_FIELDS``) never are.
``context.current`` (the resource before an update, in any input form) is read the same way.

**Custom attributes** (kustomer-api.md §3.3). Read: each entry of ``attributes.custom`` becomes
``custom_fields[field_mapping.unified_key(attr)]`` (left out when that is ``None``), its value coerced by
the attribute's type suffix: ``At`` -> aware UTC ``datetime``; ``Num`` -> ``int`` when integral, else
``float``; ``Bool`` -> ``bool``; every other suffix, and names without a known suffix (real orgs have odd
data), keep the value as it is. A value that does not fit its suffix is a ``MappingError`` naming
``customFields.<key>``. Write: each key goes through ``field_mapping.provider_key``; the attribute name
must have a valid suffix and the value must fit it
(:func:`~connectors.kustomer.custom_fields.validate_value`), else a ``MappingError`` naming
``customFields.<key>`` is raised before any request; ``None`` clears the attribute (sent as ``null``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, ClassVar, Generic, NamedTuple, TypeGuard, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic.alias_generators import to_camel

from connectors.errors import MappingError
from connectors.kustomer.custom_fields import (
    CustomAttributeError,
    parse_attribute_name,
    parse_datetime,
    validate_value,
)
from connectors.mapping import FieldMapping, MappingContext
from unified_models import UnifiedResource

__all__ = [
    "KustomerMapper",
    "Sources",
    "View",
    "check_no_custom_fields",
    "coerce_custom",
    "compose_name",
    "custom_value",
    "id_list",
    "linked_id",
    "opt_list",
    "opt_mapping",
    "opt_str",
    "parse_timestamp",
    "put_fields",
    "raw_of",
    "read_custom",
    "read_points",
    "ref",
    "ref_id",
    "ref_ids",
    "ref_value",
    "relationship_id",
    "relationship_ids",
    "split_name",
    "unwrap",
    "view_of",
    "write_custom",
    "write_name",
    "write_points",
]

U = TypeVar("U", bound=UnifiedResource)

Sources = dict[str, "str | list[str]"]
"""Unified field -> wire path it was read from (a list: one path per list item), for error messages."""

_EMPTY: Mapping[str, Any] = {}


class View(NamedTuple):
    """A Kustomer resource as plain JSON.

    Attributes:
        resource: the resource (``type``, ``id``, ``relationships``...).
        attributes: its ``attributes`` (an empty mapping when absent or ``null``).
    """

    resource: Mapping[str, Any]
    attributes: Mapping[str, Any]

    @property
    def id(self) -> str:
        """The resource id (checked by :func:`view_of`)."""
        return str(self.resource["id"])

    @property
    def type(self) -> str | None:
        """The resource type (``customer``, ``note``...), when it is a string."""
        kind = self.resource.get("type")
        return kind if isinstance(kind, str) else None


# --- reading plain JSON --------------------------------------------------------------------------------


def _is_mapping(value: Any) -> TypeGuard[Mapping[str, Any]]:
    """``isinstance(value, Mapping)``, with a fast path for ``dict`` (the JSON case)."""
    return type(value) is dict or isinstance(value, Mapping)


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def unwrap(resource: Any) -> Any:
    """Return the resource of a single-resource envelope ``{"data": {...}}``; anything else unchanged."""
    if _is_mapping(resource):
        if "id" in resource or "attributes" in resource:
            return resource
        data = resource.get("data")
    elif isinstance(resource, BaseModel) and not hasattr(resource, "attributes"):
        data = getattr(resource, "data", None)
    else:
        return resource
    return data if _is_mapping(data) or isinstance(data, BaseModel) else resource


@lru_cache(maxsize=256)
def _renamed(cls: type[BaseModel]) -> tuple[tuple[str, str], ...]:
    """(field name, JSON name) of the fields whose JSON name differs from the Python name."""
    return tuple((name, info.alias) for name, info in cls.model_fields.items() if info.alias and info.alias != name)


def _json_view(model: BaseModel) -> dict[str, Any]:
    """A model's declared fields under their JSON names, plus its extra fields (one level, no copy below)."""
    out = dict(model.__dict__)
    for name, alias in _renamed(type(model)):
        out[alias] = out.pop(name)
    if model.__pydantic_extra__:
        out.update(model.__pydantic_extra__)
    return out


def view_of(resource: Any, model: str, *, prefix: str = "") -> View:
    """Read a resource (dict, envelope or wire model) as plain JSON and check its frame.

    Args:
        resource: the resource as the API returned it, or a wire model.
        model: the unified model id (for errors).
        prefix: prepended to error paths (``"current."`` for ``context.current``).

    Returns:
        The :class:`View`.

    Raises:
        MappingError: the resource is not an object, has no string ``id``, or ``attributes`` /
            ``relationships`` are not objects.
    """
    resource = unwrap(resource)
    if isinstance(resource, BaseModel):
        resource = _json_view(resource)
        attributes = resource.get("attributes")
        if isinstance(attributes, BaseModel):
            resource["attributes"] = _json_view(attributes)
    if not _is_mapping(resource):
        raise MappingError(
            f"expected a Kustomer resource object, got {_type_name(resource)}",
            model=model,
            field=prefix.rstrip(".") or None,
        )
    rid = resource.get("id")
    if not isinstance(rid, str) or not rid:
        raise MappingError(f"expected a non-empty string id, got {_type_name(rid)}", model=model, field=f"{prefix}id")
    attributes = resource.get("attributes")
    if attributes is None:
        attributes = _EMPTY
    elif not _is_mapping(attributes):
        raise MappingError(
            f"expected an object, got {_type_name(attributes)}", model=model, field=f"{prefix}attributes"
        )
    relationships = resource.get("relationships")
    if relationships is not None and not _is_mapping(relationships):
        raise MappingError(
            f"expected an object, got {_type_name(relationships)}",
            model=model,
            field=f"{prefix}relationships",
        )
    return View(resource, attributes)


def opt_str(attributes: Mapping[str, Any], key: str, model: str) -> str | None:
    """``attributes[key]`` when it is a string; ``None`` when absent or ``null``.

    Raises:
        MappingError: any other type (``field`` is ``attributes.<key>``).
    """
    value = attributes.get(key)
    if value is None or isinstance(value, str):
        return value
    raise MappingError(f"expected a string, got {_type_name(value)}", model=model, field=f"attributes.{key}")


def opt_list(attributes: Mapping[str, Any], key: str, model: str) -> list[Any]:
    """``attributes[key]`` when it is a list; an empty list when absent or ``null``.

    Raises:
        MappingError: any other type (``field`` is ``attributes.<key>``).
    """
    value = attributes.get(key)
    if value is None:
        return []
    if isinstance(value, list):
        return value
    raise MappingError(f"expected a list, got {_type_name(value)}", model=model, field=f"attributes.{key}")


def opt_mapping(attributes: Mapping[str, Any], key: str, model: str) -> Mapping[str, Any]:
    """``attributes[key]`` when it is an object; an empty mapping when absent or ``null``.

    Raises:
        MappingError: any other type (``field`` is ``attributes.<key>``).
    """
    value = attributes.get(key)
    if value is None:
        return _EMPTY
    if _is_mapping(value):
        return value
    raise MappingError(f"expected an object, got {_type_name(value)}", model=model, field=f"attributes.{key}")


def raw_of(resource: Any) -> dict[str, Any]:
    """The resource as received: the dict itself, or a wire model dumped as JSON (camelCase)."""
    resource = unwrap(resource)
    if isinstance(resource, BaseModel):
        return resource.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return dict(resource)


def parse_timestamp(value: Any, model: str, field: str) -> datetime | None:
    """Parse a Kustomer timestamp (ISO 8601, ``Z`` or offset; no offset is UTC) into an aware UTC datetime.

    Raises:
        MappingError: not a string, not ISO 8601, or out of range; ``field`` is the attribute path.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise MappingError(f"expected an ISO 8601 date-time, got {_type_name(value)}", model=model, field=field)
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        return parsed if parsed.tzinfo is UTC else parsed.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise MappingError(f"not an ISO 8601 date-time: {value!r}", model=model, field=field) from exc


# --- names -------------------------------------------------------------------------------------------


def split_name(name: str | None) -> tuple[str | None, str | None]:
    """Split a full name on its first whitespace: ``"Ada King Lovelace"`` -> ``("Ada", "King Lovelace")``.

    A name without whitespace is a first name only; an empty name is ``(None, None)``.
    """
    if not name:
        return None, None
    parts = name.split(None, 1)
    if not parts:
        return None, None
    if len(parts) == 1:
        return parts[0], None
    return parts[0], parts[1].rstrip()


def compose_name(first: str | None, last: str | None) -> str | None:
    """Join first and last name with a space, leaving out missing parts (``None`` when both are)."""
    return " ".join(part for part in (first, last) if part) or None


def write_name(first: str | None, last: str | None, fields: set[str], current_name: str | None) -> str | None:
    """The full name to write after a change of first and/or last name.

    The part that is not in ``fields`` is taken from ``current_name`` (the name before the update), so a
    partial update never loses half of the name.
    """
    current_first, current_last = split_name(current_name)
    return compose_name(
        first if "first_name" in fields else current_first,
        last if "last_name" in fields else current_last,
    )


# --- emails and phones -------------------------------------------------------------------------------


def read_points(
    attributes: Mapping[str, Any], key: str, list_key: str, model: str
) -> tuple[list[dict[str, Any]], list[str]]:
    """Read Kustomer's ``emails``/``phones`` entries into unified ``{type, value}`` dicts.

    Entries without a value (``null`` or blank) are skipped; ``verified`` and entry ids stay in ``raw``.

    Args:
        attributes: the resource's attributes.
        key: ``"email"`` or ``"phone"``.
        list_key: ``"emails"`` or ``"phones"``.
        model: the unified model id (for errors).

    Returns:
        The unified entries, and the wire path of each one's value (``attributes.emails.2.email``), so a
        value the unified model refuses is reported where it came from.

    Raises:
        MappingError: an entry that is not an object, or a value or type that is not a string.
    """
    out: list[dict[str, Any]] = []
    paths: list[str] = []
    for index, entry in enumerate(opt_list(attributes, list_key, model)):
        if not _is_mapping(entry):
            raise MappingError(
                f"expected an object, got {_type_name(entry)}",
                model=model,
                field=f"attributes.{list_key}.{index}",
            )
        value = entry.get(key)
        kind = entry.get("type")
        if not isinstance(value, str):
            if value is None:
                continue
            raise MappingError(
                f"expected a string, got {_type_name(value)}",
                model=model,
                field=f"attributes.{list_key}.{index}.{key}",
            )
        if kind is not None and not isinstance(kind, str):
            raise MappingError(
                f"expected a string, got {_type_name(kind)}",
                model=model,
                field=f"attributes.{list_key}.{index}.type",
            )
        if not value or value.isspace():
            continue
        out.append({"type": kind, "value": value})
        paths.append(f"attributes.{list_key}.{index}.{key}")
    return out, paths


def _current_entries(attributes: Mapping[str, Any] | None, key: str, list_key: str) -> list[dict[str, Any]]:
    """The current entries as request entries (``type``, value, ``verified``), skipping malformed ones."""
    entries: list[dict[str, Any]] = []
    raw = attributes.get(list_key) if attributes is not None else None
    for entry in raw if isinstance(raw, list) else ():
        if not isinstance(entry, Mapping) or not isinstance(entry.get(key), str) or not entry[key]:
            continue
        body: dict[str, Any] = {}
        if isinstance(entry.get("type"), str):
            body["type"] = entry["type"]
        body[key] = entry[key]
        if isinstance(entry.get("verified"), bool):
            body["verified"] = entry["verified"]
        entries.append(body)
    return entries


def write_points(
    obj: UnifiedResource,
    fields: set[str],
    *,
    list_field: str,
    single_field: str | None,
    key: str,
    current: Mapping[str, Any] | None,
) -> list[dict[str, Any]] | None:
    """Build Kustomer's ``emails``/``phones`` list from the unified list and primary value.

    Rules: the unified list (``emails``), when written, replaces the whole list. The primary value
    (``email``) is the first entry: written alone, it replaces the first entry of the current list (the
    attributes of ``context.current``; the entry's ``type`` is kept) and keeps the other entries; when the
    value already is an entry, that entry is moved to the front instead (no duplicate); written together
    with the list, it is moved or inserted at the front. A primary value of ``None`` written alone removes
    the first entry.

    Returns:
        The list to write, or ``None`` when neither field is written.
    """
    has_list = list_field in fields
    has_single = single_field is not None and single_field in fields
    if not has_list and not has_single:
        return None
    entries: list[dict[str, Any]]
    if has_list:
        entries = []
        for point in getattr(obj, list_field) or ():
            body: dict[str, Any] = {"type": point.type} if point.type is not None else {}
            body[key] = point.value
            entries.append(body)
    else:
        entries = _current_entries(current, key, list_field)
    if not has_single:
        return entries
    assert single_field is not None
    primary = getattr(obj, single_field)
    if primary is None:
        return entries if has_list else entries[1:]
    for index, entry in enumerate(entries):
        if entry.get(key) == primary:
            entries.insert(0, entries.pop(index))
            return entries
    if has_list or not entries:
        entries.insert(0, {key: primary})
    else:
        first = entries[0]
        entries[0] = {"type": first["type"], key: primary} if first.get("type") else {key: primary}
    return entries


# --- custom attributes ---------------------------------------------------------------------------------


def _coerce_num(name: str, value: Any) -> int | float:
    kind = type(value)
    if kind is int:
        return int(value)
    if kind is float:
        if not math.isfinite(value):
            raise CustomAttributeError(name, "the number must be finite")
    else:
        value = validate_value(name, value)  # numeric strings; refuses bools and everything else
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _coerce_at(name: str, value: Any) -> datetime:
    if type(value) is str:  # fast path for Kustomer's own format; parse_datetime handles the rest
        try:
            parsed = datetime.fromisoformat(value)
            if parsed.tzinfo is UTC:
                return parsed
        except ValueError:
            pass
    try:
        return parse_datetime(value)
    except OverflowError as exc:
        raise CustomAttributeError(name, "date-time out of range") from exc


def _coerce_bool(name: str, value: Any) -> bool:
    return value if type(value) is bool else bool(validate_value(name, value))


_COERCERS: dict[str, Callable[[str, Any], Any]] = {"Num": _coerce_num, "At": _coerce_at, "Bool": _coerce_bool}


@lru_cache(maxsize=8192)
def _coercer(name: str) -> Callable[[str, Any], Any] | None:
    """The read coercion of an attribute name's suffix; ``None`` keeps values as they are."""
    try:
        suffix = parse_attribute_name(name)[1]
    except CustomAttributeError:
        return None  # unknown suffix on read: keep the raw value
    return _COERCERS.get(suffix)


def coerce_custom(name: str, value: Any) -> Any:
    """Coerce a custom attribute value read from Kustomer by its name's type suffix.

    ``At`` -> UTC datetime, ``Num`` -> int when integral else float, ``Bool`` -> bool; other suffixes and
    unknown suffixes keep the value. ``None`` stays ``None``.

    Raises:
        ValueError: the value does not fit the suffix (``CustomAttributeError`` is one).
    """
    coerce = _coercer(name) if isinstance(name, str) else None
    return value if coerce is None or value is None else coerce(name, value)


def read_custom(
    attributes: Mapping[str, Any],
    field_mapping: FieldMapping,
    model: str,
    *,
    exclude: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Map ``attributes.custom`` to unified ``custom_fields`` (keys through the field mapping).

    Attributes in ``exclude`` (those carrying standard unified fields) and attributes the field mapping
    does not expose are left out.

    Raises:
        MappingError: ``custom`` is not an object (``attributes.custom``), or a value does not fit its
            suffix (``customFields.<key>``).
    """
    custom = opt_mapping(attributes, "custom", model)
    if not custom:
        return {}
    # The default mapping (nothing mapped, passthrough) keeps every name: skip the per-attribute lookup.
    identity = type(field_mapping) is FieldMapping and field_mapping.passthrough and not field_mapping.fields
    out: dict[str, Any] = {}
    for attr, value in custom.items():
        if attr in exclude or not isinstance(attr, str):
            continue
        key = attr if identity else field_mapping.unified_key(attr)
        if key is None:
            continue
        coerce = _coercer(attr)
        if coerce is None or value is None:
            out[key] = value
            continue
        try:
            out[key] = coerce(attr, value)
        except ValueError as exc:
            reason = exc.reason if isinstance(exc, CustomAttributeError) else str(exc)
            raise MappingError(reason, model=model, field=f"customFields.{key}") from exc
    return out


def custom_value(attr: str, value: Any, model: str, field: str) -> Any:
    """Check and normalise one custom attribute value for writing (``validate_value``).

    Raises:
        MappingError: bad suffix or a value that does not fit it; ``field`` names the unified field.
    """
    try:
        return validate_value(attr, value)
    except CustomAttributeError as exc:
        raise MappingError(exc.reason, model=model, field=field) from exc
    except (ValueError, OverflowError) as exc:
        raise MappingError(f"custom attribute {attr!r}: {exc}", model=model, field=field) from exc


def write_custom(
    custom_fields: Mapping[str, Any] | None,
    field_mapping: FieldMapping,
    model: str,
    *,
    reserved: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Map unified ``custom_fields`` to Kustomer's ``custom`` object, checking every name and value.

    Args:
        custom_fields: unified key -> value (``None`` clears the attribute).
        field_mapping: the connection's field mapping.
        model: the unified model id (for errors).
        reserved: attribute name -> unified field, for attributes that carry standard fields (a custom
            field may not write them).

    Returns:
        Attribute name -> normalised value.

    Raises:
        MappingError: naming ``customFields.<key>``: the key maps to no attribute, to a reserved one, to a
            name without a valid type suffix, or the value does not fit the suffix.
    """
    out: dict[str, Any] = {}
    for key, value in (custom_fields or {}).items():
        field = f"customFields.{key}"
        try:
            attr = field_mapping.provider_key(key)
        except KeyError:
            raise MappingError(
                "no Kustomer attribute is mapped to this field (the field mapping has passthrough off)",
                model=model,
                field=field,
            ) from None
        if reserved and attr in reserved:
            raise MappingError(
                f"attribute {attr!r} carries {to_camel(reserved[attr])!r}; set that field instead",
                model=model,
                field=field,
            )
        out[attr] = custom_value(attr, value, model, field)
    return out


def check_no_custom_fields(obj: UnifiedResource, fields: set[str], model: str, what: str) -> None:
    """Refuse non-empty ``custom_fields`` for Kustomer objects that have no custom attributes.

    Raises:
        MappingError: ``field`` is ``customFields``.
    """
    if "custom_fields" in fields and obj.custom_fields:
        raise MappingError(f"{what} have no custom attributes", model=model, field="customFields")


# --- references --------------------------------------------------------------------------------------


def _relationship_data(view: View, key: str, model: str) -> Any:
    rels = view.resource.get("relationships")
    if not rels:
        return None
    rel = rels.get(key)
    if rel is None:
        return None
    if not _is_mapping(rel):
        raise MappingError(
            f"expected a relationship object, got {_type_name(rel)}",
            model=model,
            field=f"relationships.{key}",
        )
    return rel.get("data")


def _identifier_id(item: Any, path: str, model: str) -> str | None:
    if not _is_mapping(item):
        raise MappingError(
            f"expected a resource identifier {{type, id}}, got {_type_name(item)}", model=model, field=path
        )
    value = item.get("id")
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise MappingError(f"expected a string id, got {_type_name(value)}", model=model, field=f"{path}.id")
    return value


def relationship_id(view: View, key: str, model: str) -> str | None:
    """The id of a to-one relationship (``relationships.<key>.data.id``), or ``None``.

    Raises:
        MappingError: the relationship is malformed (``field`` is its path).
    """
    data = _relationship_data(view, key, model)
    if data is None:
        return None
    path = f"relationships.{key}.data"
    if isinstance(data, list):  # a to-many relationship read as to-one: its first id
        return _identifier_id(data[0], f"{path}.0", model) if data else None
    return _identifier_id(data, path, model)


def relationship_ids(view: View, key: str, model: str) -> list[str] | None:
    """The ids of a to-many relationship (``relationships.<key>.data[*].id``); ``None`` when absent.

    Raises:
        MappingError: the relationship is malformed (``field`` is its path).
    """
    data = _relationship_data(view, key, model)
    if data is None:
        return None
    path = f"relationships.{key}.data"
    if not isinstance(data, list):
        found = _identifier_id(data, path, model)
        return [found] if found else []
    ids = (_identifier_id(item, f"{path}.{index}", model) for index, item in enumerate(data))
    return [found for found in ids if found]


def linked_id(view: View, key: str, model: str, attribute: str | None = None) -> tuple[str | None, str]:
    """The id of a to-one link, from the relationship ``key`` or else the string attribute ``attribute``.

    Kustomer returns links such as a customer's company as a relationship; some payloads (and request
    bodies echoed back) carry the id as an attribute instead.

    Args:
        view: the resource.
        key: the relationship name (``company``).
        model: the unified model id (for errors).
        attribute: the attribute name (default: ``key``).

    Returns:
        The id (``None`` when neither is set) and the wire path it was read from.

    Raises:
        MappingError: a malformed relationship or a non-string attribute.
    """
    found = relationship_id(view, key, model)
    if found:
        return found, f"relationships.{key}.data.id"
    name = attribute or key
    return opt_str(view.attributes, name, model) or None, f"attributes.{name}"


def id_list(attributes: Mapping[str, Any], key: str, model: str) -> list[str] | None:
    """``attributes[key]`` as a list of ids (blank ids skipped); ``None`` when absent or ``null``.

    Raises:
        MappingError: not a list of strings (``field`` is the attribute path).
    """
    if attributes.get(key) is None:
        return None
    ids = opt_list(attributes, key, model)
    for index, item in enumerate(ids):
        if item is not None and not isinstance(item, str):
            raise MappingError(
                f"expected a string id, got {_type_name(item)}",
                model=model,
                field=f"attributes.{key}.{index}",
            )
    return [item for item in ids if item]


def ref(model: str, id: str | None) -> dict[str, str] | None:
    """A unified reference (as a dict, validated with the model) or ``None``."""
    return {"model": model, "id": id} if id else None


def ref_id(value: Any) -> str | None:
    """The id of a unified reference, or ``None``."""
    return None if value is None else str(value.id)


def ref_ids(values: Sequence[Any] | None) -> list[str]:
    """The ids of a list of unified references (``None`` is an empty list)."""
    return [str(v.id) for v in values or ()]


def ref_value(value: Any, ref_model: str, model: str, path: str, sources: Sources, field: str, *, multi: bool) -> Any:
    """Read an ``Id`` custom attribute value (an id, or a list of ids) into unified reference dicts.

    Single-valued: a string id or ``None``. Multi-valued: a list of ids (a single id string is accepted
    as a list of one; ``None`` is an empty list).

    Args:
        value: the attribute value.
        ref_model: the unified model the ids refer to.
        model: the unified model being read (for errors).
        path: the attribute path (``attributes.custom.stageId``).
        sources: where to record the path(s) of the value.
        field: the unified field.
        multi: whether the attribute holds a list of ids.

    Returns:
        A reference dict, ``None``, or a list of reference dicts.

    Raises:
        MappingError: a value that is not an id string (``field`` is the attribute path).
    """
    if not multi:
        sources[field] = path
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise MappingError(f"expected an id, got {_type_name(value)}", model=model, field=path)
        return {"model": ref_model, "id": value}
    if value is None:
        sources[field] = []
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise MappingError(f"expected a list of ids, got {_type_name(value)}", model=model, field=path)
    out: list[dict[str, str]] = []
    paths: list[str] = []
    for index, item in enumerate(items):
        if not isinstance(item, str):
            raise MappingError(f"expected an id, got {_type_name(item)}", model=model, field=f"{path}.{index}")
        if item:
            out.append({"model": ref_model, "id": item})
            paths.append(f"{path}.{index}")
    sources[field] = paths
    return out


# --- writing plain fields ----------------------------------------------------------------------------


def put_fields(body: dict[str, Any], obj: UnifiedResource, fields: set[str], names: Mapping[str, str]) -> None:
    """Copy plain fields that are in ``fields`` into ``body`` under their Kustomer names.

    ``names`` maps unified field -> Kustomer attribute. Lists are copied; a ``None`` list (partial
    objects) is written as an empty list.
    """
    for unified, attribute in names.items():
        if unified in fields:
            value = getattr(obj, unified)
            if isinstance(value, list):
                value = list(value)
            elif value is None and unified in _list_fields(type(obj)):
                value = []
            body[attribute] = value


@lru_cache(maxsize=256)
def _list_fields(cls: type[UnifiedResource]) -> frozenset[str]:
    return frozenset(name for name, info in cls.model_fields.items() if "list[" in str(info.annotation))


# --- the mapper template -------------------------------------------------------------------------------


def _first_error(exc: ValidationError) -> tuple[tuple[int | str, ...], str]:
    err = exc.errors(include_url=False, include_input=False, include_context=False)[0]
    return tuple(err["loc"]), err["msg"]


@lru_cache(maxsize=256)
def _field_names(cls: type[BaseModel]) -> Mapping[str, str]:
    """Alias and name -> field name of a model (pydantic reports either in error locations)."""
    names: dict[str, str] = {}
    for name, info in cls.model_fields.items():
        names[name] = name
        if info.alias:
            names[info.alias] = name
    return names


class KustomerMapper(Generic[U]):
    """Template of a Kustomer mapper; subclasses set the class attributes and implement ``read``/``write``.

    Attributes:
        model: the unified model id.
        unified_type: the unified model class.
        field_paths: unified field -> wire path, for errors of fields whose path ``read`` did not record
            (the default is ``attributes.<camelCase field>``).
    """

    model: str
    unified_type: type[U]
    field_paths: ClassVar[Mapping[str, str]] = {"custom_fields": "attributes.custom"}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r})"

    # -- read --

    def view(self, resource: Any, *, prefix: str = "") -> View:
        """Read ``resource`` as plain JSON (see :func:`view_of`)."""
        return view_of(resource, self.model, prefix=prefix)

    def to_unified(self, resource: Any, context: MappingContext) -> U:
        """Map a Kustomer resource to the unified model.

        Args:
            resource: the JSON:API resource (dict, envelope or wire model).
            context: the mapping context.

        Returns:
            The unified model.

        Raises:
            MappingError: naming the attribute path that could not be mapped.
        """
        view = self.view(resource)
        sources: Sources = {}
        data = self.read(view, context, sources)
        attributes = view.attributes
        data.setdefault("id", view.resource["id"])
        data["created_at"] = parse_timestamp(attributes.get("createdAt"), self.model, "attributes.createdAt")
        data["updated_at"] = parse_timestamp(attributes.get("updatedAt"), self.model, "attributes.updatedAt")
        if context.include_raw:
            data["raw"] = raw_of(resource)
        return self.build(data, sources)

    def read(self, view: View, context: MappingContext, sources: Sources) -> dict[str, Any]:
        """Return the unified fields (snake_case) read from ``view``; record wire paths in ``sources``."""
        raise NotImplementedError

    def build(self, data: dict[str, Any], sources: Sources) -> U:
        """Validate ``data`` into the unified model, reporting failures at the wire path they came from.

        Raises:
            MappingError: the unified model refused a value.
        """
        try:
            return self.unified_type.model_validate(data)
        except ValidationError as exc:
            loc, msg = _first_error(exc)
            raise MappingError(msg, model=self.model, field=self._source_of(loc, sources)) from exc

    def _source_of(self, loc: tuple[int | str, ...], sources: Sources) -> str:
        if not loc:
            return "attributes"
        name = _field_names(self.unified_type).get(str(loc[0]), str(loc[0]))
        source = sources.get(name) or self.field_paths.get(name) or f"attributes.{to_camel(name)}"
        index = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None
        if isinstance(source, list):
            return source[index] if index is not None and index < len(source) else f"attributes.{to_camel(name)}"
        return source if index is None else f"{source}.{index}"

    # -- write --

    def to_provider(self, obj: UnifiedResource, context: MappingContext) -> dict[str, Any]:
        """Map a unified object to Kustomer's flat request body.

        Only the fields in ``obj.model_fields_set`` are written; read-only fields never are.

        Args:
            obj: the unified object (a partial object gives PATCH semantics).
            context: the mapping context; ``context.current`` is the resource before an update.

        Returns:
            The request body.

        Raises:
            MappingError: naming the unified field that cannot be written.
        """
        if not isinstance(obj, self.unified_type):
            raise MappingError(f"expected a {self.unified_type.__name__}, got {type(obj).__name__}", model=self.model)
        current = None if context.current is None else self.view(context.current, prefix="current.")
        fields = set(obj.model_fields_set) - type(obj).READ_ONLY_FIELDS
        try:
            return self.write(obj, fields, current, context)
        except MappingError as exc:
            # Write errors name unified fields; wire paths can only come from reading ``current``.
            if exc.field and exc.field.startswith(("attributes", "relationships")):
                raise MappingError(exc.reason, model=exc.model, field=f"current.{exc.field}") from exc
            raise

    def write(self, obj: U, fields: set[str], current: View | None, context: MappingContext) -> dict[str, Any]:
        """Return the request body for the ``fields`` of ``obj`` (``current``: the resource before)."""
        raise NotImplementedError
