"""Unified list filters -> Kustomer search criteria (pure; no I/O).

Filters a caller can pass to ``resources(model).list(filters=...)``:

==================  =====================================================================
filter              meaning
==================  =====================================================================
``email``           has this email (contacts, companies*, users) — a lookup path when alone
``phone``           has this phone (contacts, companies*) — a lookup path when alone
``externalId``      this external id — a lookup path when alone
``name``            name contains (case-insensitive)
``updatedAfter``    updated strictly after (ISO 8601); also ``updatedBefore``, ``updatedSince`` (>=)
``createdAfter``    created strictly after; also ``createdBefore``, ``createdSince``
``ids``             exactly these ids (fetched directly, at most 100)
``tags``            has this tag (or any of a list)
``custom.<key>``    custom field equals a value, or ``{"<op>": value}`` with op one of equals,
                    contains, in, gt, gte, lt, lte, not_set
``status``          engagements: planned | inProgress | completed (conversation status)
``type``            engagements: call | email | ... | note
``contact``         engagements and opportunities: of this contact id
==================  =====================================================================

(* companies: email/phone through search only.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from connectors.errors import QueryError
from connectors.mapping import FieldMapping

__all__ = [
    "DATE_FILTERS",
    "OPERATORS",
    "format_timestamp",
    "parse_timestamp",
    "search_criteria",
]

OPERATORS: Final = frozenset({"equals", "contains", "in", "gt", "gte", "lt", "lte", "not_set"})

DATE_FILTERS: Final[Mapping[str, tuple[str, str]]] = {
    "updatedAfter": ("updated_at", "gt"),
    "updatedSince": ("updated_at", "gte"),
    "updatedBefore": ("updated_at", "lt"),
    "createdAfter": ("created_at", "gt"),
    "createdSince": ("created_at", "gte"),
    "createdBefore": ("created_at", "lt"),
}


def parse_timestamp(value: Any, *, field: str) -> datetime:
    """Parse an ISO 8601 timestamp or datetime into an aware UTC datetime.

    Raises:
        QueryError: not a timestamp (names ``field``).
    """
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    raise QueryError(f"expected an ISO 8601 timestamp, got {value!r}", field=field)


def format_timestamp(value: datetime) -> str:
    """Kustomer's timestamp format: UTC with milliseconds and ``Z``."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _custom_criterion(
    prefix: str, key: str, value: Any, mapping: FieldMapping, attr_check: Callable[[str], None]
) -> dict[str, Any]:
    try:
        attr = mapping.provider_key(key)
    except KeyError:
        raise QueryError("no custom field with this key is mapped on the connection", field=f"custom.{key}") from None
    attr_check(attr)
    if isinstance(value, Mapping):
        if len(value) != 1:
            raise QueryError("give exactly one operator, e.g. {'gte': 10}", field=f"custom.{key}")
        op, operand = next(iter(value.items()))
        if op not in OPERATORS:
            raise QueryError(f"unknown operator {op!r}; use one of {sorted(OPERATORS)}", field=f"custom.{key}")
        return {f"{prefix}_{attr}": {op: operand}}
    if isinstance(value, list):
        return {f"{prefix}_{attr}": {"in": value}}
    return {f"{prefix}_{attr}": {"equals": value}}


def search_criteria(
    ctx: str,
    filters: Mapping[str, Any],
    *,
    supported: Mapping[str, Callable[[Any], dict[str, Any]]],
    field_mapping: FieldMapping,
    attr_check: Callable[[str], None],
    custom_prefix: str | None = None,
) -> list[dict[str, Any]]:
    """Translate unified filters into a list of Kustomer search criteria (AND-ed).

    Args:
        ctx: the search context prefix (``customer``, ``company``, ``conversation``, ``kobject_<klass>``).
        filters: the unified filters.
        supported: model-specific filters -> criterion builders (besides dates and ``custom.*``).
        field_mapping: maps ``custom.<key>`` to Kustomer attribute names.
        attr_check: validates a custom attribute name (raises on a bad suffix).
        custom_prefix: prefix of custom attributes (default ``<ctx>_custom``; KObjects use
            ``kobject_custom_<klass>``).

    Raises:
        QueryError: an unknown filter, operator, or a malformed value (names the filter).
    """
    criteria: list[dict[str, Any]] = []
    for name, value in filters.items():
        if name in DATE_FILTERS:
            attr, op = DATE_FILTERS[name]
            criteria.append({f"{ctx}_{attr}": {op: format_timestamp(parse_timestamp(value, field=name))}})
        elif name.startswith("custom."):
            prefix = custom_prefix or f"{ctx}_custom"
            criteria.append(_custom_criterion(prefix, name[len("custom.") :], value, field_mapping, attr_check))
        elif name in supported:
            criteria.append(supported[name](value))
        else:
            known = sorted([*DATE_FILTERS, *supported, "custom.<key>"])
            raise QueryError(f"unknown filter; supported: {', '.join(known)}", field=f"filters.{name}")
    return criteria
