"""The search DSL of ``POST /v1/customers/search`` (kustomer-api.md §2.10).

Body keys: ``queryContext`` (required: ``customer``, ``company``, ``conversation``, ``message``, ``note``,
``kobject`` or ``kobject_<klassName>``), ``and[]``, ``or[]``, ``not`` (object or array), ``sort[]``,
``timeZone``, ``includeDeleted``, and the accepted-but-ignored ``fields``, ``aggs``, ``searchHash``,
``trackTotalHits``. Any other key is a 400. Top-level ``and``, ``or`` and ``not`` combine with AND.

A criterion is ``{"<ctx>_<attr>": {"<op>": value}}``; several attributes in one object, or several
operators for one attribute, must all hold. ``and``/``or``/``not`` nest. Custom attributes are
``<ctx>_custom_<name>`` (and ``kobject_custom_<klass>_<name>``); their suffix gives their type.

Operators: ``equals``, ``not_equals``, ``contains``, ``starts_with``, ``in`` (array), ``gt``, ``gte``, ``lt``,
``lte``, ``not_set`` (value ignored; true when missing, null or empty) and ``is_set``. Strings compare
case-insensitively; list attributes (emails, phones, tags...) match when any element matches; phones compare
by digits. ``gt``/``gte``/``lt``/``lte`` work on numbers, date-times (ISO timestamps in UTC, or
``YYYY-MM-DD`` dates local to ``timeZone``, default UTC) and strings (lexicographic, so ``<ctx>_id`` supports
keyset paging). Unknown attributes or operators, or an operator the attribute's type does not support, are a
400. Cross-context criteria (``conversation_*`` in a customer search) are not emulated (400).

``sort`` is a list of ``{"<ctx>_<attr>": "asc"|"desc"}`` objects, applied in order; missing values sort last;
ties are always broken by id ascending, so keyset paging is well defined. Default: ``<ctx>_updated_at desc``.

Query parameters ``page`` (at most ``search_max_page`` = 100: a higher page is a 400, though ``links.next`` on
page 100 still points at page 101), ``pageSize`` (at most 500) and ``idsOnly`` (data items are then only
``{type, id}``). Deleted objects are tombstones returned only with ``includeDeleted: true`` (with
``deletedAt``). Errors use the ``simple`` shape.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from connectors.kustomer.custom_fields import CustomAttributeError, parse_attribute_name
from connectors.kustomer.sandbox.errors import SandboxError
from connectors.kustomer.sandbox.resources import phone_key
from connectors.kustomer.sandbox.store import Collection, Record, SortedIndex, TimeRange
from connectors.kustomer.sandbox.timeutil import parse_ms

if TYPE_CHECKING:
    from connectors.kustomer.sandbox.app import Sandbox

__all__ = ["ATTRIBUTES", "OPERATORS", "SearchEngine", "SearchResult"]

Kind = Literal["string", "text", "id", "number", "datetime", "boolean", "phone"]
Getter = Callable[[Record], Any]
Predicate = Callable[[Record], bool]

OPERATORS: Final = frozenset(
    {"equals", "not_equals", "contains", "starts_with", "in", "gt", "gte", "lt", "lte", "not_set", "is_set"}
)
_BODY_KEYS: Final = frozenset(
    {
        "queryContext",
        "and",
        "or",
        "not",
        "sort",
        "timeZone",
        "includeDeleted",
        "fields",
        "aggs",
        "searchHash",
        "trackTotalHits",
    }
)
_RANGE_OPS: Final = frozenset({"gt", "gte", "lt", "lte"})
_TEXT_OPS: Final = frozenset({"contains", "starts_with"})


@dataclass(frozen=True, slots=True)
class Attr:
    """A searchable attribute: its kind and how to read it from a record (a value or a list)."""

    kind: Kind
    get: Getter
    time_field: Literal["created", "updated"] | None = None


def _attr(key: str, kind: Kind = "string") -> Attr:
    return Attr(kind, lambda r: r.attrs.get(key))


def _rel(key: str) -> Attr:
    return Attr("id", lambda r: r.rels.get(key))


def _items(key: str, field: str, kind: Kind = "string") -> Attr:
    def get(record: Record) -> list[Any]:
        return [item.get(field) for item in record.attrs.get(key) or () if isinstance(item, dict)]

    return Attr(kind, get)


def _timestamps() -> dict[str, Attr]:
    return {
        "id": Attr("id", lambda r: r.id),
        "created_at": Attr("datetime", lambda r: r.created_ms, "created"),
        "updated_at": Attr("datetime", lambda r: r.updated_ms, "updated"),
        "modified_at": Attr("datetime", lambda r: r.modified_ms),
    }


def _customer_any_text(record: Record) -> list[Any]:
    attrs = record.attrs
    values: list[Any] = [attrs.get("name"), attrs.get("externalId"), attrs.get("username")]
    values += [item.get("email") for item in attrs.get("emails") or ()]
    values += [item.get("phone") for item in attrs.get("phones") or ()]
    return [v for v in values if v]


ATTRIBUTES: Final[Mapping[str, Mapping[str, Attr]]] = {
    "customer": {
        **_timestamps(),
        "name": _attr("name", "text"),
        "email": _items("emails", "email"),
        "phone": _items("phones", "phone", "phone"),
        "externalId": _attr("externalId"),
        "external_id": _attr("externalId"),
        "username": _attr("username"),
        "tags": _attr("tags"),
        "locale": _attr("locale"),
        "time_zone": _attr("timeZone"),
        "gender": _attr("gender"),
        "company_id": _rel("company"),
        "last_seen_at": _attr("lastSeenAt", "datetime"),
        "signed_up_at": _attr("signedUpAt", "datetime"),
        "activity_at": _attr("lastActivityAt", "datetime"),
        "any_text": Attr("text", _customer_any_text),
    },
    "company": {
        **_timestamps(),
        "name": _attr("name", "text"),
        "externalId": _attr("externalId"),
        "external_id": _attr("externalId"),
        "domains": _items("domains", "domain"),
        "tags": _attr("tags"),
        "employee_count": _attr("employeeCount", "number"),
    },
    "conversation": {
        **_timestamps(),
        "name": _attr("name", "text"),
        "status": _attr("status"),
        "priority": _attr("priority", "number"),
        "channels": _attr("channels"),
        "assigned_users": Attr("id", lambda r: r.attrs.get("assignedUsers")),
        "assigned_teams": Attr("id", lambda r: r.attrs.get("assignedTeams")),
        "tags": _attr("tags"),
        "direction": _attr("direction"),
        "customer_id": _rel("customer"),
        "externalId": _attr("externalId"),
        "external_id": _attr("externalId"),
        "message_count": _attr("messageCount", "number"),
        "last_message_at": _attr("lastMessageAt", "datetime"),
    },
    "message": {
        **_timestamps(),
        "body": Attr("text", lambda r: [v for v in (r.attrs.get("body"), r.attrs.get("preview")) if v]),
        "preview": _attr("preview", "text"),
        "subject": _attr("subject", "text"),
        "channel": _attr("channel"),
        "direction": _attr("direction"),
        "status": _attr("status"),
        "app": _attr("app"),
        "customer_id": _rel("customer"),
        "conversation_id": _rel("conversation"),
        "externalId": _attr("externalId"),
        "external_id": _attr("externalId"),
        "sent_at": _attr("sentAt", "datetime"),
    },
    "note": {
        **_timestamps(),
        "body": _attr("body", "text"),
        "conversation_id": _rel("conversation"),
        "customer_id": _rel("customer"),
        "externalId": _attr("externalId"),
        "external_id": _attr("externalId"),
    },
    "kobject": {
        **_timestamps(),
        "title": _attr("title", "text"),
        "description": _attr("description", "text"),
        "externalId": _attr("externalId"),
        "external_id": _attr("externalId"),
        "customer_id": _rel("customer"),
        "company_id": _rel("company"),
        "klass_id": _rel("klass"),
        "tags": _attr("tags"),
        "status": _attr("status"),
    },
}
"""Standard searchable attributes per context (the part after ``<ctx>_``)."""

_COLLECTIONS: Final = {
    "customer": "customers",
    "company": "companies",
    "conversation": "conversations",
    "message": "messages",
    "note": "notes",
    "kobject": "kobjects",
}
_SUFFIX_KINDS: Final[Mapping[str, Kind]] = {
    "Str": "string",
    "Txt": "text",
    "Tree": "string",
    "Url": "string",
    "Id": "id",
    "Num": "number",
    "At": "datetime",
    "Bool": "boolean",
}


@dataclass(slots=True)
class SearchResult:
    """A page of search results."""

    total: int
    records: list[Record]


def _bad(message: str, **meta: Any) -> SandboxError:
    return SandboxError(400, message, style="simple", meta=meta)


def _values(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [v for v in value if v is not None]
    return [value]


class _Compiler:
    """Compiles a search body into a predicate (plus time-range hints for index pushdown)."""

    def __init__(self, sb: Sandbox, context: str, klass: Record | None, time_zone: str | None) -> None:
        self.sb = sb
        self.prefix = "kobject" if context.startswith("kobject") else context
        self.context = context
        self.klass = klass
        self.time_zone = time_zone
        self.hints: list[TimeRange] = []

    def resolve(self, key: str) -> Attr:
        prefix = self.prefix + "_"
        if not key.startswith(prefix):
            raise _bad(
                f"Search attribute {key!r} does not belong to queryContext {self.context!r} "
                f"(expected the prefix {prefix!r})",
                attribute=key,
            )
        name = key[len(prefix) :]
        if name.startswith("custom_"):
            return self._custom(key, name[len("custom_") :])
        attr = ATTRIBUTES[self.prefix].get(name)
        if attr is None:
            raise _bad(f"Unknown search attribute {key!r} for queryContext {self.context!r}", attribute=key)
        return attr

    def _custom(self, key: str, rest: str) -> Attr:
        attr_name = rest
        if self.prefix == "kobject" and "_" in rest:
            klass_name, attr_name = rest.rsplit("_", 1)
            if self.klass is not None and klass_name != self.klass.attrs.get("name"):
                raise _bad(f"{key!r} names another Klass than the queryContext", attribute=key)
        try:
            _, suffix = parse_attribute_name(attr_name)
        except CustomAttributeError as exc:
            raise _bad(f"Unknown search attribute {key!r}: {exc.reason}", attribute=key) from None
        kind = _SUFFIX_KINDS[suffix]
        return Attr(kind, lambda r: (r.attrs.get("custom") or {}).get(attr_name))

    # -- values ----------------------------------------------------------------------------------------------
    def _operand(self, kind: Kind, key: str, op: str, value: Any) -> Any:
        if kind == "datetime":
            try:
                return parse_ms(value, time_zone=self.time_zone)
            except ValueError as exc:
                raise _bad(f"{key}.{op}: {exc}", attribute=key) from None
        if kind == "number":
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise _bad(f"{key}.{op}: expected a number", attribute=key)
            try:
                return float(value)
            except ValueError:
                raise _bad(f"{key}.{op}: expected a number", attribute=key) from None
        if kind == "boolean":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            raise _bad(f"{key}.{op}: expected a boolean", attribute=key)
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise _bad(f"{key}.{op}: expected a string", attribute=key)
        text = str(value).lower()
        return phone_key(text) if kind == "phone" else text

    @staticmethod
    def _normalize(kind: Kind, value: Any) -> Any:
        if kind == "datetime":
            if isinstance(value, int):
                return value
            try:
                return parse_ms(value)
            except ValueError:
                return None
        if kind == "number":
            return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        if kind == "boolean":
            return value if isinstance(value, bool) else None
        text = str(value).lower()
        return phone_key(text) if kind == "phone" else text

    # -- compiling -------------------------------------------------------------------------------------------
    def group(self, node: Any, *, where: str, top: bool = False) -> Predicate:
        if isinstance(node, list):
            return self._all([self.clause(item, where=where, top=top) for item in node])
        return self.clause(node, where=where, top=top)

    def clause(self, node: Any, *, where: str, top: bool = False) -> Predicate:
        if not isinstance(node, dict) or not node:
            raise _bad(f"{where}: each criterion must be a non-empty object")
        parts: list[Predicate] = []
        for key, spec in node.items():
            if key == "and":
                parts.append(self._all(self._list(spec, f"{where}.and", top=top)))
            elif key == "or":
                parts.append(self._any(self._list(spec, f"{where}.or")))
            elif key == "not":
                parts.append(_negate(self.group(spec, where=f"{where}.not")))
            else:
                parts.append(self.criterion(key, spec, top=top))
        return self._all(parts)

    def _list(self, spec: Any, where: str, *, top: bool = False) -> list[Predicate]:
        if not isinstance(spec, list):
            raise _bad(f"{where} must be an array")
        return [self.clause(item, where=f"{where}[{i}]", top=top) for i, item in enumerate(spec)]

    def criterion(self, key: str, spec: Any, *, top: bool) -> Predicate:
        attr = self.resolve(key)
        if not isinstance(spec, dict) or not spec:
            raise _bad(f'{key}: expected an object of operators, e.g. {{"equals": ...}}', attribute=key)
        parts = []
        for op, value in spec.items():
            if op not in OPERATORS:
                raise _bad(f"Unknown search operator {op!r} for {key!r}", attribute=key, operator=op)
            parts.append(self._operator(attr, key, op, value, top=top))
        return self._all(parts)

    def _operator(self, attr: Attr, key: str, op: str, value: Any, *, top: bool) -> Predicate:
        kind, get, normalize = attr.kind, attr.get, self._normalize
        if op in ("not_set", "is_set"):
            want_set = op == "is_set"
            return lambda r: bool(_values(get(r))) is want_set
        if op in _TEXT_OPS and kind not in ("string", "text", "id", "phone"):
            raise _bad(f"Operator {op!r} is not supported for {key!r}", attribute=key, operator=op)
        if op == "in":
            if not isinstance(value, list):
                raise _bad(f"{key}.in: expected an array", attribute=key)
            wanted = {self._operand(kind, key, op, v) for v in value}
            return lambda r: any(normalize(kind, v) in wanted for v in _values(get(r)))
        operand = self._operand(kind, key, op, value)
        if op in _RANGE_OPS and kind == "boolean":
            raise _bad(f"Operator {op!r} is not supported for {key!r}", attribute=key, operator=op)
        if top and attr.time_field is not None and op in _RANGE_OPS:
            lower = op in ("gt", "gte")
            self.hints.append(
                TimeRange(attr.time_field, lo=operand, lo_inclusive=op == "gte")
                if lower
                else TimeRange(attr.time_field, hi=operand, hi_inclusive=op == "lte")
            )
        test = _TESTS[op]

        def predicate(record: Record) -> bool:
            for v in _values(get(record)):
                n = normalize(kind, v)
                if n is not None and test(n, operand):
                    return True
            return False

        if op == "not_equals":

            def not_equal(record: Record) -> bool:
                return not any(normalize(kind, v) == operand for v in _values(get(record)))

            return not_equal
        return predicate

    @staticmethod
    def _all(parts: Sequence[Predicate]) -> Predicate:
        if len(parts) == 1:
            return parts[0]
        return lambda r: all(p(r) for p in parts)

    @staticmethod
    def _any(parts: Sequence[Predicate]) -> Predicate:
        return lambda r: any(p(r) for p in parts)


def _lt(a: Any, b: Any) -> bool:
    try:
        return bool(a < b)
    except TypeError:
        return False


_TESTS: Final[Mapping[str, Callable[[Any, Any], bool]]] = {
    "equals": lambda a, b: a == b,
    "not_equals": lambda a, b: a != b,
    "contains": lambda a, b: isinstance(a, str) and b in a,
    "starts_with": lambda a, b: isinstance(a, str) and a.startswith(b),
    "gt": lambda a, b: _lt(b, a),
    "gte": lambda a, b: a == b or _lt(b, a),
    "lt": _lt,
    "lte": lambda a, b: a == b or _lt(a, b),
}


class SearchEngine:
    """Runs searches, caching the ordered result ids of recent queries until the data changes.

    Args:
        sandbox: the owning sandbox.
    """

    def __init__(self, sandbox: Sandbox) -> None:
        self._sb = sandbox
        self._cache: OrderedDict[str, tuple[int, list[str]]] = OrderedDict()

    def run(self, body: Any, *, page: int, size: int, archive: bool = False) -> tuple[str, SearchResult]:
        """Validate and run a search; returns ``(type, page of records)``.

        Raises:
            SandboxError: 400 (simple shape) for any invalid part of the query or a page above the cap.
        """
        sb = self._sb
        settings = sb.settings
        if not isinstance(body, dict):
            raise _bad("The search body must be a JSON object")
        unknown = sorted(set(body) - _BODY_KEYS)
        if unknown:
            raise _bad(f"Unknown search body key(s): {', '.join(unknown)}", keys=unknown)
        context = body.get("queryContext")
        if not isinstance(context, str) or not context:
            raise _bad('"queryContext" is required')
        klass: Record | None = None
        if context.startswith("kobject_"):
            klass = sb.state.klass_by_name(context[len("kobject_") :])
            if klass is None:
                raise _bad(f"Unknown queryContext {context!r}: no such Klass", queryContext=context)
        elif context not in _COLLECTIONS:
            raise _bad(f"Unknown queryContext {context!r}", queryContext=context)
        if page > settings.search_max_page:
            raise _bad(
                f"Search results are limited to {settings.search_max_page} pages; page {page} was requested. "
                f"Narrow the query instead, e.g. sort by {context.split('_')[0]}_updated_at asc and filter "
                "with gte on the last updatedAt seen.",
                maxPage=settings.search_max_page,
            )
        time_zone = body.get("timeZone")
        if time_zone is not None and not isinstance(time_zone, str):
            raise _bad('"timeZone" must be a string')
        include_deleted = body.get("includeDeleted", False)
        if not isinstance(include_deleted, bool):
            raise _bad('"includeDeleted" must be a boolean')
        compiler = _Compiler(sb, context, klass, time_zone)
        predicates: list[Predicate] = []
        for key in ("and", "or"):
            if key in body:
                parts = compiler._list(body[key], key, top=key == "and")
                predicates.append(_Compiler._all(parts) if key == "and" else _Compiler._any(parts))
        if "not" in body:
            predicates.append(_negate(compiler.group(body["not"], where="not")))
        sort_keys = self._sort_keys(compiler, body.get("sort"))
        collection = sb.state.collections[_COLLECTIONS[compiler.prefix]]
        canonical = json.dumps(
            [
                context,
                body.get("and"),
                body.get("or"),
                body.get("not"),
                body.get("sort"),
                time_zone,
                include_deleted,
                archive,
            ],
            sort_keys=True,
            default=str,
        )
        cached = self._cache.get(canonical) if settings.search_archive_after_days is None else None
        if cached is not None and cached[0] == sb.state_version():
            ids = cached[1]
            self._cache.move_to_end(canonical)
        else:
            ids = self._execute(
                collection,
                compiler,
                predicates,
                sort_keys,
                klass,
                include_deleted=include_deleted,
                archive=archive,
            )
            self._cache[canonical] = (sb.state_version(), ids)
            while len(self._cache) > 32:
                self._cache.popitem(last=False)
        start = (page - 1) * size
        records = [r for r in (collection.get_any(i) for i in ids[start : start + size]) if r is not None]
        return collection.type, SearchResult(len(ids), records)

    def _sort_keys(self, compiler: _Compiler, sort: Any) -> list[tuple[Attr, bool]]:
        if sort is None:
            return [(ATTRIBUTES[compiler.prefix]["updated_at"], True)]
        entries = sort if isinstance(sort, list) else [sort]
        keys: list[tuple[Attr, bool]] = []
        for entry in entries:
            if not isinstance(entry, dict) or not entry:
                raise _bad('"sort" must be an array of {"<attribute>": "asc"|"desc"} objects')
            for key, direction in entry.items():
                if not isinstance(direction, str) or direction.lower() not in ("asc", "desc"):
                    raise _bad(f"sort direction of {key!r} must be 'asc' or 'desc'", attribute=key)
                keys.append((compiler.resolve(key), direction.lower() == "desc"))
        return keys

    def _execute(
        self,
        collection: Collection,
        compiler: _Compiler,
        predicates: list[Predicate],
        sort_keys: list[tuple[Attr, bool]],
        klass: Record | None,
        *,
        include_deleted: bool,
        archive: bool,
    ) -> list[str]:
        candidates = self._candidates(collection, compiler.hints)
        if include_deleted:
            candidates = [*candidates, *collection.tombstones.values()]
        if klass is not None:
            candidates = [r for r in candidates if r.rels.get("klass") == klass.id]
        days = self._sb.settings.search_archive_after_days
        if days is not None:
            cutoff = round(self._sb.clock() * 1000) - days * 86_400_000
            candidates = [r for r in candidates if (r.updated_ms < cutoff) is archive]
        elif archive:
            candidates = []
        matched = [r for r in candidates if all(p(r) for p in predicates)]
        matched.sort(key=lambda r: r.id)
        for attr, descending in reversed(sort_keys):
            matched.sort(key=_sort_key(attr, descending), reverse=descending)
        return [r.id for r in matched]

    @staticmethod
    def _candidates(collection: Collection, hints: Iterable[TimeRange]) -> list[Record]:
        best: tuple[SortedIndex, TimeRange] | None = None
        for hint in hints:
            index = collection.by_created if hint.field == "created" else collection.by_updated
            if best is None:
                best = (index, hint)
        if best is None:
            return list(collection.live.values())
        index, hint = best
        start, stop = index.bounds(hint)
        return [collection.live[key[1]] for key in index.keys[start:stop]]


def _sort_key(attr: Attr, descending: bool) -> Callable[[Record], tuple[bool, Any]]:
    kind, get = attr.kind, attr.get

    def key(record: Record) -> tuple[bool, Any]:
        values = _values(get(record))
        value = _Compiler._normalize(kind, values[0]) if values else None
        if value is None:  # missing values sort last in both directions
            return (not descending, 0 if kind in ("number", "datetime", "boolean") else "")
        return (descending, value)

    return key


def _negate(predicate: Predicate) -> Predicate:
    return lambda record: not predicate(record)
