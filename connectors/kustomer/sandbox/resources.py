"""Resource types: one generic validate -> plan -> commit -> render pipeline, configured per type.

Every write (single routes, sub-resource routes, bulk jobs) goes through :meth:`ResourceType.plan_create` /
:meth:`ResourceType.plan_update` (validation only, no side effects) and :meth:`ResourceType.commit` (apply,
maintain indexes and counters, emit outbound-webhook events). Bulk batches plan every item first and commit
only if all are valid, which is how "one invalid item rejects the whole batch" falls out naturally.

Update semantics (kustomer-api.md §2.1, §3.6):

* ``PATCH`` and ``PUT`` merge: given top-level attributes replace the stored ones, ``custom`` is merged key
  by key (``null`` removes a key), relationships not given are kept...
* ...except a customer's ``company``: omitting it on any update unlinks the customer (documented quirk).
* ``PUT ?replace=true`` replaces the document: attributes not given are dropped (system-maintained ones such
  as ``messageCount`` survive).
* A ``rev`` in an update body must equal the stored ``rev`` (optimistic locking) or the answer is 409.
* Response-only attributes (``displayName``, ``conversationCounts``...) are computed when rendering.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal

from pydantic import BaseModel, ValidationError

from connectors.kustomer.custom_fields import CustomAttributeError, parse_attribute_name, validate_value
from connectors.kustomer.sandbox import bodies
from connectors.kustomer.sandbox.errors import SandboxError
from connectors.kustomer.sandbox.store import Collection, Record
from connectors.kustomer.sandbox.timeutil import iso, parse_ms

if TYPE_CHECKING:
    from connectors.kustomer.sandbox.app import Sandbox
    from connectors.kustomer.sandbox.auth import Principal

__all__ = [
    "TYPE_PATHS",
    "Plan",
    "Ref",
    "ResourceType",
    "WriteContext",
    "build_resource_types",
    "dump_provided",
    "phone_key",
]

TYPE_PATHS: Final[Mapping[str, str]] = {
    "customer": "/v1/customers",
    "company": "/v1/companies",
    "conversation": "/v1/conversations",
    "message": "/v1/messages",
    "note": "/v1/notes",
    "user": "/v1/users",
    "team": "/v1/teams",
    "klass": "/v1/klasses",
    "tag": "/v1/tags",
    "org": "/v1/orgs",
    "outbound_webhook": "/v1/outbound-webhooks",
    "web_hook": "/v1/hooks/web",
}
"""JSON:API type -> collection path (for ``links``)."""

_TIMESTAMP_KEYS: Final = frozenset({"createdAt", "modifiedAt", "createdBy", "modifiedBy", "rev"})
_UNCHANGED_KEYS: Final = frozenset({"updatedAt", "modifiedAt", "rev"})


@dataclass(frozen=True, slots=True)
class Ref:
    """A body field that references other objects.

    Attributes:
        name: body key (``company``).
        target: collection name (``companies``).
        many: a list of ids.
        store: ``rel`` (a relationship) or ``attr`` (an attribute holding ids, e.g. ``assignedUsers``).
    """

    name: str
    target: str
    many: bool = False
    store: Literal["rel", "attr"] = "rel"


@dataclass(slots=True)
class WriteContext:
    """Who writes, when, and from where.

    Attributes:
        user_id: the acting user (``createdBy``/``modifiedBy``).
        principal: the caller (role checks of privileged attributes), None for internal writes.
        now_ms: the write time.
        forced: path-imposed fields (``customer`` of ``POST /customers/{id}/conversations``).
        source: ``api``, ``bulk`` or ``system``.
        klass: the Klass record of KObject writes.
    """

    user_id: str | None
    principal: Principal | None
    now_ms: int
    forced: dict[str, Any] = field(default_factory=dict)
    source: Literal["api", "bulk", "system"] = "api"
    klass: Record | None = None


@dataclass(slots=True)
class Plan:
    """A validated write, ready to :meth:`ResourceType.commit`."""

    rt: ResourceType
    record: Record | None
    provided: dict[str, Any]
    attrs: dict[str, Any]
    rels: dict[str, Any]
    ctx: WriteContext
    created_ms: int | None = None
    created_by: str | None = None
    modified_ms: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def dump_provided(model: BaseModel) -> dict[str, Any]:
    """The fields a request actually sent, by wire name, in declaration order (nested models as dicts)."""
    out: dict[str, Any] = {}
    fields_set = model.model_fields_set
    for name, info in type(model).model_fields.items():
        if name in fields_set:
            out[info.alias or name] = _plain(getattr(model, name))
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(by_alias=True, mode="json", exclude_none=True)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _aliases(model: type[BaseModel]) -> frozenset[str]:
    return frozenset(info.alias or name for name, info in model.model_fields.items())


def validation_error(exc: ValidationError) -> SandboxError:
    """Turn pydantic's first error into Kustomer's 400 (``"emails.0.email" must be a valid email``)."""
    err = exc.errors(include_url=False)[0]
    loc = [str(part) for part in err["loc"]]
    path = ".".join(loc) or "body"
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        detail = f'"{path}" is not allowed'
    elif err["type"] == "missing":
        detail = f'"{path}" is required'
    else:
        detail = f'"{path}" {message[:1].lower()}{message[1:]}'
    return SandboxError(400, detail, pointer="/" + "/".join(loc) if loc else None)


def phone_key(phone: str) -> str:
    """Normalised phone for lookups and search: digits only."""
    return "".join(ch for ch in phone if ch.isdigit())


def rel_object(type_: str, target: str | None, *, path: str | None = None) -> dict[str, Any]:
    """A JSON:API relationship object (``{"data": {type, id}, "links": {"self": ...}}``)."""
    if target is None:
        return {"data": None}
    base = path or TYPE_PATHS.get(type_, f"/v1/{type_}s")
    return {"data": {"type": type_, "id": target}, "links": {"self": f"{base}/{target}"}}


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """The ``changes`` of an update event: ``{attributes|relationships: {name: {before, after}}}``.

    ``updatedAt``, ``modifiedAt`` and ``rev`` change on every write and are left out.
    """
    out: dict[str, Any] = {}
    for section in ("attributes", "relationships"):
        old: Mapping[str, Any] = before.get(section) or {}
        new: Mapping[str, Any] = after.get(section) or {}
        changed: dict[str, Any] = {}
        for key in dict.fromkeys([*old, *new]):
            if key in _UNCHANGED_KEYS:
                continue
            a, b = old.get(key), new.get(key)
            if section == "relationships":
                a = (a or {}).get("data")
                b = (b or {}).get("data")
            if a != b:
                changed[key] = {"before": a, "after": b}
        if changed:
            out[section] = changed
    return out


class ResourceType:
    """Configuration and behaviour of one Kustomer resource type.

    Subclasses set the class variables and override the small hooks (:meth:`check`, :meth:`after_commit`,
    :meth:`computed`...). Instances belong to one sandbox.

    Args:
        sandbox: the owning sandbox.
    """

    type: ClassVar[str]
    collection_name: ClassVar[str]
    body_model: ClassVar[builtins.type[bodies.Body]]
    required: ClassVar[tuple[str, ...]] = ()
    refs: ClassVar[tuple[Ref, ...]] = ()
    rel_types: ClassVar[Mapping[str, str]] = {}
    rel_index: ClassVar[tuple[str, ...]] = ()
    item_id_fields: ClassVar[tuple[str, ...]] = ()
    system_attrs: ClassVar[tuple[str, ...]] = ()
    clear_omitted_rels: ClassVar[tuple[str, ...]] = ()
    event: ClassVar[str | None] = None
    metadata_resource: ClassVar[str | None] = None
    unique_external_id: ClassVar[bool] = False
    create_limited: ClassVar[bool] = False
    people: ClassVar[bool] = False

    def __init__(self, sandbox: Sandbox) -> None:
        self.sb = sandbox
        self._aliases = _aliases(self.body_model)

    # -- plumbing --------------------------------------------------------------------------------------------
    @property
    def coll(self) -> Collection:
        """This type's collection."""
        return self.sb.state.collections[self.collection_name]

    def new_collection(self) -> Collection:
        """An empty collection configured with this type's indexes."""
        return Collection(self.collection_name, self.type, rel_index=self.rel_index, lookup_keys=self.lookup_keys)

    @property
    def max_page_size(self) -> int:
        """Largest ``pageSize`` of this type's lists."""
        settings = self.sb.settings
        return settings.people_max_page_size if self.people else settings.list_max_page_size

    def path(self, record: Record) -> str:
        """The record's ``links.self``."""
        return f"{TYPE_PATHS[self.type]}/{record.id}"

    def lookup_keys(self, record: Record) -> Iterable[tuple[str, str]]:
        """Lookup keys of a record (default: its ``externalId``)."""
        ext = record.attrs.get("externalId")
        return (("externalId", str(ext)),) if ext else ()

    def get_or_404(self, record_id: str) -> Record:
        """The live record, or a 404."""
        record = self.coll.get(record_id)
        if record is None:
            raise SandboxError(404, f"{self.type} {record_id} not found")
        return record

    def metadata_key(self, record: Record | None, ctx: WriteContext) -> str | None:
        """The ``/v1/metadata/{resource}`` key governing this type's custom attributes."""
        return self.metadata_resource

    def event_key(self) -> str | None:
        """The ``<resource>`` of this type's ``kustomer.<resource>.create|update`` events, if it has any."""
        return self.event

    # -- parsing ---------------------------------------------------------------------------------------------
    def parse(self, body: Any, *, required: Sequence[str], forced: Mapping[str, Any]) -> dict[str, Any]:
        """Validate a request body; return the provided fields by wire name.

        Raises:
            SandboxError: 400 for a non-object body, an unknown or invalid attribute, or a missing one.
        """
        if not isinstance(body, dict):
            raise SandboxError(400, "The request body must be a JSON object of attributes")
        data = {k: v for k, v in body.items() if k not in ("id", "_clientRef")}
        data.update(forced)
        if not self.sb.settings.reject_unknown_attributes:
            data = {k: v for k, v in data.items() if k in self._aliases}
        try:
            model = self.body_model.model_validate(data)
        except ValidationError as exc:
            raise validation_error(exc) from None
        provided = dump_provided(model)
        for name in required:
            if provided.get(name) in (None, "", []):
                raise SandboxError(400, f'"{name}" is required', pointer=f"/{name}")
        return provided

    # -- planning --------------------------------------------------------------------------------------------
    def defaults(self, ctx: WriteContext) -> dict[str, Any]:
        """Attributes of a new record before the body is applied."""
        return {}

    def plan_create(self, body: Any, ctx: WriteContext) -> Plan:
        """Validate a create; nothing is written.

        Raises:
            SandboxError: 400/404/409/429 as Kustomer would answer.
        """
        provided = self.parse(body, required=self.required, forced=ctx.forced)
        plan = Plan(self, None, provided, self.defaults(ctx), {}, ctx)
        self._apply(plan, provided, merge=False)
        self._finish_plan(plan)
        return plan

    def plan_update(self, record: Record, body: Any, ctx: WriteContext, *, replace: bool = False) -> Plan:
        """Validate an update (merge, or replace with ``replace=True``); nothing is written.

        Raises:
            SandboxError: 400/404/409 as Kustomer would answer.
        """
        required = [r for r in self.required if r not in {ref.name for ref in self.refs}] if replace else ()
        provided = self.parse(body, required=required, forced=ctx.forced)
        if "rev" in provided and provided["rev"] is not None and provided["rev"] != record.rev:
            raise SandboxError(
                409,
                f"Conflict: rev {provided['rev']} does not match the current rev {record.rev}",
                meta={"rev": record.rev},
            )
        if replace:
            attrs = self.defaults(ctx)
            for key in self.system_attrs:
                if key in record.attrs:
                    attrs[key] = record.attrs[key]
        else:
            attrs = dict(record.attrs)
        rels = dict(record.rels)
        for rel in self.clear_omitted_rels:
            if rel not in provided:
                rels[rel] = None
        plan = Plan(self, record, provided, attrs, rels, ctx)
        self._apply(plan, provided, merge=not replace)
        self._finish_plan(plan)
        return plan

    def _apply(self, plan: Plan, provided: Mapping[str, Any], *, merge: bool) -> None:
        refs = {ref.name: ref for ref in self.refs}
        for key, value in provided.items():
            ref = refs.get(key)
            if ref is not None:
                self._check_ref(ref, value)
                if ref.store == "rel":
                    plan.rels[key] = value
                else:
                    plan.attrs[key] = list(dict.fromkeys(value)) if value is not None else []
            elif key == "createdAt":
                if value is not None:
                    plan.created_ms = parse_ms(value)
            elif key == "modifiedAt":
                if value is not None:
                    plan.modified_ms = parse_ms(value)
            elif key == "createdBy":
                self._check_ref(Ref("createdBy", "users"), value)
                plan.created_by = value
            elif key == "modifiedBy":
                self._check_ref(Ref("modifiedBy", "users"), value)
                plan.extra["modified_by"] = value
            elif key == "rev":
                continue
            elif key == "custom":
                custom = self.check_custom(value or {}, plan)
                if merge and value is not None and plan.record is not None:
                    merged = dict(plan.attrs.get("custom") or {})
                    for name, item in custom.items():
                        if item is None:
                            merged.pop(name, None)
                        else:
                            merged[name] = item
                    plan.attrs["custom"] = merged
                else:
                    plan.attrs["custom"] = {k: v for k, v in custom.items() if v is not None}
            elif key in self.item_id_fields and isinstance(value, list):
                plan.attrs[key] = [self._with_id(item) for item in value]
            else:
                plan.attrs[key] = value

    def _with_id(self, item: Any) -> Any:
        if isinstance(item, dict) and not item.get("id"):
            return {"id": self.sb.ids.new(), **{k: v for k, v in item.items() if k != "id"}}
        return item

    def _check_ref(self, ref: Ref, value: Any) -> None:
        if value is None:
            return
        coll = self.sb.state.collections[ref.target]
        for target in value if ref.many else (value,):
            if coll.get(target) is None:
                raise SandboxError(
                    400, f'"{ref.name}" references an unknown {coll.type}: {target}', pointer=f"/{ref.name}"
                )

    def check_custom(self, values: Mapping[str, Any], plan: Plan) -> dict[str, Any]:
        """Validate custom attributes: suffix, value type, enumeration, and ``Id`` metadata and targets.

        Raises:
            SandboxError: 400 naming the attribute.
        """
        meta_key = self.metadata_key(plan.record, plan.ctx)
        properties = self.sb.state.metadata.get(meta_key or "", {})
        out: dict[str, Any] = {}
        for name, value in values.items():
            pointer = f"/custom/{name}"
            try:
                normalized = validate_value(name, value)
                _, suffix = parse_attribute_name(name)
            except CustomAttributeError as exc:
                raise SandboxError(400, str(exc), pointer=pointer, meta={"attribute": name}) from None
            prop = properties.get(name)
            if normalized is not None and suffix == "Id":
                normalized = self._check_reference(name, normalized, prop, meta_key)
            elif normalized is not None and suffix == "Str" and prop and prop.get("enumeration"):
                allowed = [str(option) for option in prop["enumeration"]]
                if normalized not in allowed:
                    raise SandboxError(
                        400,
                        f"custom attribute {name!r}: {normalized!r} is not one of its enumeration "
                        f"({', '.join(allowed)})",
                        pointer=pointer,
                        meta={"attribute": name},
                    )
            out[name] = normalized
        return out

    def _check_reference(
        self, name: str, value: str | list[str], prop: Mapping[str, Any] | None, meta_key: str | None
    ) -> str | list[str]:
        pointer = f"/custom/{name}"
        if not prop or not prop.get("target"):
            raise SandboxError(
                400,
                f"custom attribute {name!r}: Id attributes need metadata with a target before use "
                f"(PUT /v1/metadata/{meta_key or '<resource>'})",
                pointer=pointer,
                meta={"attribute": name},
            )
        multi = bool(prop.get("multi"))
        if isinstance(value, list) and not multi:
            raise SandboxError(
                400, f"custom attribute {name!r}: takes one id (its metadata is not multi)", pointer=pointer
            )
        ids = value if isinstance(value, list) else [value]
        for target_id in ids:
            if not self.sb.target_exists(str(prop["target"]), target_id):
                raise SandboxError(
                    400,
                    f"custom attribute {name!r}: {prop['target']} {target_id} does not exist",
                    pointer=pointer,
                    meta={"attribute": name},
                )
        return ids if multi else ids[0]

    def _finish_plan(self, plan: Plan) -> None:
        self.check(plan)
        if self.unique_external_id:
            ext = plan.attrs.get("externalId")
            if ext:
                for key in self.lookup_keys(self._probe(plan)):
                    if key[0] != "externalId":
                        continue
                    for other in self.coll.lookup(*key):
                        if plan.record is None or other.id != plan.record.id:
                            raise SandboxError(
                                409,
                                f"A {self.type} with externalId {ext!r} already exists ({other.id})",
                                meta={"conflictingId": other.id},
                            )
        if plan.record is None and self.create_limited and plan.ctx.source == "api":
            customer = self.customer_of(plan)
            if customer and not plan.attrs.get("importedAt"):
                self.sb.check_create_limit(customer)

    def _probe(self, plan: Plan) -> Record:
        return Record(self.type, plan.record.id if plan.record else "", plan.attrs, plan.rels, 0, 0, 0)

    def customer_of(self, plan: Plan) -> str | None:
        """The customer a new object belongs to (for the per-customer create limit)."""
        value = plan.rels.get("customer")
        return value if isinstance(value, str) else None

    def check(self, plan: Plan) -> None:
        """Type-specific validation of a plan (may also complete ``plan.rels``/``plan.attrs``)."""

    # -- committing ------------------------------------------------------------------------------------------
    def commit(self, plan: Plan) -> Record:
        """Apply a plan: write, index, maintain counters and emit the outbound-webhook event."""
        sb = self.sb
        ctx = plan.ctx
        self.before_commit(plan)
        now = ctx.now_ms
        actor = plan.extra.get("modified_by") or ctx.user_id
        key = self.event_key()
        event = f"kustomer.{key}.{'create' if plan.record is None else 'update'}" if key else None
        wanted = event is not None and sb.webhooks.wants(event)
        if plan.record is None:
            created = plan.created_ms if plan.created_ms is not None else now
            record = Record(
                type=self.type,
                id=sb.ids.new(),
                attrs=plan.attrs,
                rels=plan.rels,
                created_ms=created,
                updated_ms=now,
                modified_ms=plan.modified_ms or now,
                created_by=plan.created_by or ctx.user_id,
                modified_by=actor,
            )
            self.coll.insert(record)
            before = None
            if self.create_limited and ctx.source == "api" and not plan.attrs.get("importedAt"):
                customer = self.customer_of(plan)
                if customer:
                    sb.count_create(customer)
        else:
            record = plan.record
            before = self.render(record) if wanted else None
            with self.coll.updating(record):
                record.attrs = plan.attrs
                record.rels = plan.rels
                record.updated_ms = max(now, record.updated_ms)
                record.modified_ms = plan.modified_ms or record.updated_ms
                record.rev += 1
                record.modified_by = actor
                if plan.created_ms is not None:
                    record.created_ms = plan.created_ms
        self.after_commit(plan, record)
        if wanted and event is not None:
            after = self.render(record)
            sb.webhooks.emit(event, after, None if before is None else diff(before, after))
        return record

    def before_commit(self, plan: Plan) -> None:
        """Hook run just before a plan is applied."""

    def after_commit(self, plan: Plan, record: Record) -> None:
        """Hook run after a plan was applied (counters, tags)."""

    def system_update(self, record: Record, mutate: Callable[[dict[str, Any]], None], ctx: WriteContext) -> None:
        """Apply a server-side change (counters) as a write: ``rev``/``updatedAt`` bump and update event."""
        key = self.event_key()
        event = f"kustomer.{key}.update" if key else None
        wanted = event is not None and self.sb.webhooks.wants(event)
        before = self.render(record) if wanted else None
        with self.coll.updating(record):
            attrs = dict(record.attrs)
            mutate(attrs)
            record.attrs = attrs
            record.updated_ms = max(ctx.now_ms, record.updated_ms)
            record.rev += 1
        if wanted and event is not None and before is not None:
            after = self.render(record)
            self.sb.webhooks.emit(event, after, diff(before, after))

    def delete(self, record: Record, ctx: WriteContext) -> None:
        """Delete a record (kept as a tombstone for ``includeDeleted`` searches)."""
        self.coll.delete(record, ctx.now_ms)
        self.after_delete(record, ctx)

    def after_delete(self, record: Record, ctx: WriteContext) -> None:
        """Hook run after a delete."""

    # -- rendering -------------------------------------------------------------------------------------------
    def computed(self, record: Record) -> dict[str, Any]:
        """Response-only attributes."""
        return {}

    def extra_relationships(self, record: Record) -> dict[str, Any]:
        """Relationships beyond ``org``, ``createdBy``, ``modifiedBy`` and :attr:`rel_types`."""
        return {}

    def render(self, record: Record) -> dict[str, Any]:
        """The JSON:API resource object of a record."""
        attrs = dict(record.attrs)
        attrs.update(self.computed(record))
        attrs["createdAt"] = iso(record.created_ms)
        attrs["updatedAt"] = iso(record.updated_ms)
        attrs["modifiedAt"] = iso(record.modified_ms)
        attrs["rev"] = record.rev
        if record.deleted_ms is not None:
            attrs["deleted"] = True
            attrs["deletedAt"] = iso(record.deleted_ms)
        org_id = self.sb.state.org.id
        rels: dict[str, Any] = {"org": rel_object("org", org_id)}
        for name, type_ in self.rel_types.items():
            rels[name] = rel_object(type_, record.rels.get(name))
        if record.created_by:
            rels["createdBy"] = rel_object("user", record.created_by)
        if record.modified_by:
            rels["modifiedBy"] = rel_object("user", record.modified_by)
        rels.update(self.extra_relationships(record))
        return {
            "type": self.type,
            "id": record.id,
            "attributes": attrs,
            "relationships": rels,
            "links": {"self": self.path(record)},
        }


# -- the types -----------------------------------------------------------------------------------------------
_CONTACT_ITEMS: Final = (
    "emails",
    "sharedEmails",
    "phones",
    "sharedPhones",
    "whatsapps",
    "externalIds",
    "sharedExternalIds",
    "socials",
    "sharedSocials",
    "urls",
    "locations",
    "facebookIds",
    "instagramIds",
)
_COLORS: Final = ("blue", "green", "orange", "purple", "red", "teal", "yellow", "pink")


class CustomerType(ResourceType):
    """Customers (§3.4). Omitting ``company`` on an update unlinks the company."""

    type = "customer"
    collection_name = "customers"
    body_model = bodies.CustomerBody
    refs = (Ref("company", "companies"),)
    rel_types = {"company": "company"}
    rel_index = ("company",)
    item_id_fields = _CONTACT_ITEMS
    clear_omitted_rels = ("company",)
    event = "customer"
    metadata_resource = "customer"
    unique_external_id = True

    def lookup_keys(self, record: Record) -> Iterable[tuple[str, str]]:
        """``email`` (lower-cased), ``phone`` (digits) and ``externalId`` keys."""
        keys: list[tuple[str, str]] = []
        for item in record.attrs.get("emails") or ():
            if item.get("email"):
                keys.append(("email", str(item["email"]).lower()))
        for item in record.attrs.get("phones") or ():
            if item.get("phone"):
                keys.append(("phone", phone_key(str(item["phone"]))))
        ext = record.attrs.get("externalId")
        if ext:
            keys.append(("externalId", str(ext)))
        return keys

    def after_commit(self, plan: Plan, record: Record) -> None:
        """Register new tags."""
        if "tags" in plan.provided:
            self.sb.tag_type.ensure(plan.provided["tags"] or (), plan.ctx)

    def computed(self, record: Record) -> dict[str, Any]:
        """``displayName``, ``conversationCounts``, ``lastConversation``, ``progressiveStatus``..."""
        attrs = record.attrs
        emails = attrs.get("emails") or ()
        phones = attrs.get("phones") or ()
        display = attrs.get("name") or (emails[0].get("email") if emails else None)
        if not display:
            display = phones[0].get("phone") if phones else "Unknown Customer"
        counts = {"all": 0, "open": 0, "snoozed": 0, "done": 0}
        conversations = self.sb.state.conversations
        last: Record | None = None
        for conv_id in conversations.rel_index["customer"].get(record.id, ()):
            conv = conversations.live.get(conv_id)
            if conv is None:
                continue
            counts["all"] += 1
            status = conv.attrs.get("status", "open")
            if status in counts:
                counts[status] += 1
            if last is None or conv.id > last.id:
                last = conv
        progressive = (
            "open" if counts["open"] else "snoozed" if counts["snoozed"] else "done" if counts["done"] else None
        )
        digest = int(record.id[-4:], 16)
        out: dict[str, Any] = {
            "displayName": display,
            "displayColor": _COLORS[digest % len(_COLORS)],
            "displayIcon": "user",
            "conversationCounts": counts,
            "lastConversation": (
                {
                    "id": last.id,
                    "channels": last.attrs.get("channels", []),
                    "tags": last.attrs.get("tags", []),
                }
                if last
                else None
            ),
            "progressiveStatus": progressive,
            "verified": any(bool(item.get("verified")) for item in emails),
            "activeUsers": [],
            "watchers": [],
        }
        for key in ("sharedEmails", "sharedPhones", "sharedExternalIds", "sharedSocials", "tags"):
            if key not in attrs:
                out[key] = []
        return out


class CompanyType(ResourceType):
    """Companies (§3.5). No DELETE/PATCH unless ``company_delete_supported``."""

    type = "company"
    collection_name = "companies"
    body_model = bodies.CompanyBody
    required = ("name",)
    item_id_fields = ("emails", "phones", "whatsapps", "socials", "urls", "domains", "locations")
    metadata_resource = "company"
    unique_external_id = True

    def lookup_keys(self, record: Record) -> Iterable[tuple[str, str]]:
        """``externalId`` key."""
        ext = record.attrs.get("externalId")
        return (("externalId", str(ext)),) if ext else ()

    def after_commit(self, plan: Plan, record: Record) -> None:
        """Register new tags."""
        if "tags" in plan.provided:
            self.sb.tag_type.ensure(plan.provided["tags"] or (), plan.ctx)

    def computed(self, record: Record) -> dict[str, Any]:
        """``displayName`` and empty defaults."""
        out: dict[str, Any] = {"displayName": record.attrs.get("name")}
        for key in ("domains", "tags", "emails", "phones"):
            if key not in record.attrs:
                out[key] = []
        return out


class ConversationType(ResourceType):
    """Conversations (§3.6); ``messageCount``/``noteCount``/``channels`` are maintained by writes."""

    type = "conversation"
    collection_name = "conversations"
    body_model = bodies.ConversationBody
    required = ("customer",)
    refs = (
        Ref("customer", "customers"),
        Ref("assignedUsers", "users", many=True, store="attr"),
        Ref("assignedTeams", "teams", many=True, store="attr"),
    )
    rel_types = {"customer": "customer"}
    rel_index = ("customer",)
    system_attrs = ("messageCount", "noteCount", "outboundMessageCount", "channels", "lastMessageAt")
    event = "conversation"
    metadata_resource = "conversation"
    unique_external_id = True
    create_limited = True

    def defaults(self, ctx: WriteContext) -> dict[str, Any]:
        """Open, priority 1, inbound, no messages yet."""
        return {
            "name": None,
            "status": "open",
            "priority": 1,
            "direction": "in",
            "channels": [],
            "tags": [],
            "assignedUsers": [],
            "assignedTeams": [],
            "messageCount": 0,
            "noteCount": 0,
            "outboundMessageCount": 0,
        }

    def check(self, plan: Plan) -> None:
        """A new conversation is ``open`` or ``done`` (``snoozed`` only by update)."""
        if plan.record is None and plan.attrs.get("status") == "snoozed":
            raise SandboxError(400, '"status" must be one of [open, done] when creating', pointer="/status")
        if plan.rels.get("customer") is None:
            raise SandboxError(400, '"customer" is required', pointer="/customer")

    def after_commit(self, plan: Plan, record: Record) -> None:
        """Register new tags."""
        if "tags" in plan.provided:
            self.sb.tag_type.ensure(plan.provided["tags"] or (), plan.ctx)

    def extra_relationships(self, record: Record) -> dict[str, Any]:
        """``messages`` (links only)."""
        return {"messages": {"links": {"self": f"/v1/conversations/{record.id}/messages"}}}


class MessageType(ResourceType):
    """Messages (§3.7). Without a conversation, creating a message creates one."""

    type = "message"
    collection_name = "messages"
    body_model = bodies.MessageBody
    required = ("channel", "direction", "app")
    refs = (Ref("customer", "customers"), Ref("conversation", "conversations"))
    rel_types = {"customer": "customer", "conversation": "conversation"}
    rel_index = ("customer", "conversation")
    event = "message"
    metadata_resource = "message"
    create_limited = True

    def check(self, plan: Plan) -> None:
        """Tie the message to its conversation's customer; privileged attributes need ``org.admin``."""
        privileged = [k for k in ("createdAt", "createdBy", "modifiedAt", "modifiedBy") if k in plan.provided]
        principal = plan.ctx.principal
        if privileged and principal is not None and not principal.has_any(("org.admin",)):
            raise SandboxError(
                self.sb.settings.missing_role_status,
                f"Setting {', '.join(privileged)} on a message requires the org.admin role",
                meta={"requiredRoles": ["org.admin"]},
            )
        conv_id = plan.rels.get("conversation")
        if conv_id:
            conv = self.sb.state.conversations.get(conv_id)
            assert conv is not None  # checked as a reference
            owner = conv.rels.get("customer")
            if plan.rels.get("customer") not in (None, owner):
                raise SandboxError(400, "The conversation belongs to another customer", pointer="/customer")
            plan.rels["customer"] = owner
        elif plan.record is None:
            if not plan.rels.get("customer"):
                raise SandboxError(400, '"customer" or "conversation" is required', pointer="/customer")
            plan.extra["create_conversation"] = True
        if plan.record is None:
            plan.attrs.setdefault("status", "received" if plan.attrs.get("direction") == "in" else "sent")
            if plan.attrs.get("preview") is None and plan.attrs.get("body"):
                plan.attrs["preview"] = str(plan.attrs["body"])[:200]

    def before_commit(self, plan: Plan) -> None:
        """Create the conversation a conversation-less message implies."""
        if plan.extra.pop("create_conversation", False):
            conversations = self.sb.conversation_type
            ctx = WriteContext(plan.ctx.user_id, None, plan.ctx.now_ms, source="system")
            conv_plan = conversations.plan_create(
                {"customer": plan.rels["customer"], "direction": plan.attrs.get("direction", "in")}, ctx
            )
            plan.rels["conversation"] = conversations.commit(conv_plan).id

    def after_commit(self, plan: Plan, record: Record) -> None:
        """Bump the conversation's counters and channels (a conversation update)."""
        if plan.record is not None or not record.rels.get("conversation"):
            return
        conv = self.sb.state.conversations.get(record.rels["conversation"])
        if conv is None:
            return
        channel = record.attrs.get("channel")
        outbound = record.attrs.get("direction") == "out"
        when = iso(record.created_ms)

        def bump(attrs: dict[str, Any]) -> None:
            attrs["messageCount"] = int(attrs.get("messageCount", 0)) + 1
            if outbound:
                attrs["outboundMessageCount"] = int(attrs.get("outboundMessageCount", 0)) + 1
            channels = list(attrs.get("channels") or [])
            if channel and channel not in channels:
                channels.append(channel)
            attrs["channels"] = channels
            attrs["lastMessageAt"] = when

        self.sb.conversation_type.system_update(conv, bump, plan.ctx)


class NoteType(ResourceType):
    """Notes (§3.7); ``customer`` follows the conversation."""

    type = "note"
    collection_name = "notes"
    body_model = bodies.NoteBody
    required = ("body",)
    refs = (Ref("conversation", "conversations"),)
    rel_types = {"customer": "customer", "conversation": "conversation"}
    rel_index = ("customer", "conversation")
    metadata_resource = "note"
    create_limited = True

    def check(self, plan: Plan) -> None:
        """Derive ``customer`` from the conversation."""
        conv_id = plan.rels.get("conversation")
        conv = self.sb.state.conversations.get(conv_id) if conv_id else None
        plan.rels["customer"] = conv.rels.get("customer") if conv else None

    def after_commit(self, plan: Plan, record: Record) -> None:
        """Count the note on its conversation."""
        if plan.record is None:
            self._count(record, +1, plan.ctx)

    def after_delete(self, record: Record, ctx: WriteContext) -> None:
        """Uncount the note."""
        self._count(record, -1, ctx)

    def _count(self, record: Record, delta: int, ctx: WriteContext) -> None:
        conv = self.sb.state.conversations.get(record.rels.get("conversation") or "")
        if conv is not None:

            def bump(attrs: dict[str, Any]) -> None:
                attrs["noteCount"] = max(0, int(attrs.get("noteCount", 0)) + delta)

            self.sb.conversation_type.system_update(conv, bump, ctx)


class UserType(ResourceType):
    """Users (human and machine)."""

    type = "user"
    collection_name = "users"
    body_model = bodies.UserBody
    required = ("name", "email")
    event = "user"
    metadata_resource = "user"
    people = True

    def defaults(self, ctx: WriteContext) -> dict[str, Any]:
        """A new user is an active human user without roles."""
        return {"userType": "user", "roles": [], "pending": False}

    def lookup_keys(self, record: Record) -> Iterable[tuple[str, str]]:
        """``email`` key (lower-cased)."""
        email = record.attrs.get("email")
        return (("email", str(email).lower()),) if email else ()

    def computed(self, record: Record) -> dict[str, Any]:
        """``displayName`` defaults to ``name``."""
        return {} if record.attrs.get("displayName") else {"displayName": record.attrs.get("name")}


class TeamType(ResourceType):
    """Teams; ``members`` are user ids."""

    type = "team"
    collection_name = "teams"
    body_model = bodies.TeamBody
    required = ("name",)
    refs = (Ref("members", "users", many=True, store="attr"),)
    event = "team"
    people = True
    unique_external_id = True

    def defaults(self, ctx: WriteContext) -> dict[str, Any]:
        """No members."""
        return {"members": []}

    def computed(self, record: Record) -> dict[str, Any]:
        """``displayName`` defaults to ``name``."""
        return {} if record.attrs.get("displayName") else {"displayName": record.attrs.get("name")}


class KlassType(ResourceType):
    """Klasses (custom object types); their KObjects are addressed by Klass *name*."""

    type = "klass"
    collection_name = "klasses"
    body_model = bodies.KlassBody
    required = ("name",)

    def defaults(self, ctx: WriteContext) -> dict[str, Any]:
        """Enabled."""
        return {"status": "enabled"}

    def lookup_keys(self, record: Record) -> Iterable[tuple[str, str]]:
        """``name`` key."""
        name = record.attrs.get("name")
        return (("name", str(name)),) if name else ()

    def check(self, plan: Plan) -> None:
        """Klass names are unique and immutable."""
        name = plan.attrs.get("name")
        if plan.record is not None and name != plan.record.attrs.get("name"):
            raise SandboxError(400, "A Klass name cannot be changed", pointer="/name")
        existing = self.sb.state.klass_by_name(str(name))
        if plan.record is None and existing is not None:
            raise SandboxError(409, f"A Klass named {name!r} already exists ({existing.id})")

    def computed(self, record: Record) -> dict[str, Any]:
        """``displayName`` defaults to ``name``."""
        return {} if record.attrs.get("displayName") else {"displayName": record.attrs.get("name")}


class KObjectType(ResourceType):
    """KObjects (custom objects) of all Klasses; ``ctx.klass`` says which Klass a write targets."""

    type = "kobject"
    collection_name = "kobjects"
    body_model = bodies.KObjectBody
    required = ("title",)
    refs = (Ref("customer", "customers"), Ref("company", "companies"))
    rel_types = {"klass": "klass", "customer": "customer", "company": "company"}
    rel_index = ("klass", "customer", "company")
    unique_external_id = True
    create_limited = True

    def lookup_keys(self, record: Record) -> Iterable[tuple[str, str]]:
        """``externalId`` scoped to the Klass (``<klassId>:<externalId>``)."""
        ext = record.attrs.get("externalId")
        return (("externalId", f"{record.rels.get('klass')}:{ext}"),) if ext else ()

    def klass_name(self, record: Record) -> str:
        """Name of the record's Klass."""
        klass = self.sb.state.klasses.get_any(str(record.rels.get("klass")))
        return str(klass.attrs.get("name")) if klass else "unknown"

    def path(self, record: Record) -> str:
        """``/v1/klasses/<name>/<id>``."""
        return f"/v1/klasses/{self.klass_name(record)}/{record.id}"

    def metadata_key(self, record: Record | None, ctx: WriteContext) -> str | None:
        """``kobject_<klassName>``."""
        if record is not None:
            return f"kobject_{self.klass_name(record)}"
        return f"kobject_{ctx.klass.attrs.get('name')}" if ctx.klass is not None else None

    def check(self, plan: Plan) -> None:
        """Bind the KObject to its Klass."""
        if plan.record is None:
            if plan.ctx.klass is None:
                raise SandboxError(404, "Klass not found")
            plan.rels["klass"] = plan.ctx.klass.id
        elif plan.ctx.klass is not None and plan.record.rels.get("klass") != plan.ctx.klass.id:
            raise SandboxError(404, f"kobject {plan.record.id} not found in this Klass")

    def after_commit(self, plan: Plan, record: Record) -> None:
        """Register new tags."""
        if "tags" in plan.provided:
            self.sb.tag_type.ensure(plan.provided["tags"] or (), plan.ctx)


class TagType(ResourceType):
    """Tags; created implicitly when a new tag name is used."""

    type = "tag"
    collection_name = "tags"
    body_model = bodies.TagBody
    required = ("name",)

    def event_key(self) -> str | None:
        """``tag`` events only when ``tag_events_enabled``."""
        return "tag" if self.sb.settings.tag_events_enabled else None

    def lookup_keys(self, record: Record) -> Iterable[tuple[str, str]]:
        """``name`` key (lower-cased)."""
        name = record.attrs.get("name")
        return (("name", str(name).lower()),) if name else ()

    def ensure(self, names: Iterable[str], ctx: WriteContext) -> list[Record]:
        """Return the tags with these names, creating unknown ones."""
        out = []
        for name in names:
            found = self.coll.lookup("name", str(name).lower())
            if found:
                out.append(found[0])
            else:
                inner = WriteContext(ctx.user_id, None, ctx.now_ms, source="system")
                out.append(self.commit(self.plan_create({"name": name}, inner)))
        return out

    def computed(self, record: Record) -> dict[str, Any]:
        """``displayName`` = name."""
        return {"displayName": record.attrs.get("name")}


class OutboundWebhookType(ResourceType):
    """Outbound webhook subscriptions (§2.9); the response includes the signing ``token``."""

    type = "outbound_webhook"
    collection_name = "outbound_webhooks"
    body_model = bodies.OutboundWebhookBody
    required = ("name", "url", "events")

    def defaults(self, ctx: WriteContext) -> dict[str, Any]:
        """Enabled, no custom headers, a fresh token."""
        return {"enabled": True, "headers": [], "token": self.sb.webhooks.new_token()}

    def check(self, plan: Plan) -> None:
        """URL scheme, known events, at most ``max_outbound_webhooks``."""
        settings = self.sb.settings
        url = str(plan.attrs.get("url") or "")
        schemes = ("https://", "http://") if settings.allow_http_webhooks else ("https://",)
        if not url.startswith(schemes) or len(url) <= len("https://"):
            allowed = "an http(s)" if settings.allow_http_webhooks else "an https"
            raise SandboxError(400, f'"url" must be {allowed} URL', pointer="/url")
        known = set(self.sb.webhooks.event_names())
        for name in plan.attrs.get("events") or ():
            if name not in known:
                raise SandboxError(400, f'"events" contains an unknown event {name!r}', pointer="/events")
        if plan.record is None and len(self.coll) >= settings.max_outbound_webhooks:
            raise SandboxError(400, f"An org may have at most {settings.max_outbound_webhooks} outbound webhooks")
        if plan.record is not None and "token" not in plan.attrs:
            plan.attrs["token"] = plan.record.attrs.get("token")


class WebHookType(ResourceType):
    """Inbound web hooks (§2.8): ``url`` and ``eventName`` are derived."""

    type = "web_hook"
    collection_name = "web_hooks"
    body_model = bodies.WebHookBody

    def defaults(self, ctx: WriteContext) -> dict[str, Any]:
        """Enabled, with a fresh address hash."""
        return {"enabled": True, "hash": self.sb.webhooks.new_token()[:40]}

    def lookup_keys(self, record: Record) -> Iterable[tuple[str, str]]:
        """``hash`` key."""
        return (("hash", str(record.attrs.get("hash"))),)

    def computed(self, record: Record) -> dict[str, Any]:
        """``url`` and ``eventName``."""
        return {
            "url": f"{self.sb.base_url.rstrip('/')}/v1/hooks/web/{record.attrs.get('hash')}",
            "eventName": f"kustomer.hooks.web.{record.id}.receive",
        }


RESOURCE_TYPES: Final[tuple[type[ResourceType], ...]] = (
    CustomerType,
    CompanyType,
    ConversationType,
    MessageType,
    NoteType,
    UserType,
    TeamType,
    KlassType,
    KObjectType,
    TagType,
    OutboundWebhookType,
    WebHookType,
)


def build_resource_types(sandbox: Sandbox) -> dict[str, ResourceType]:
    """One instance of every resource type, by JSON:API type."""
    return {cls.type: cls(sandbox) for cls in RESOURCE_TYPES}
