"""``crmEngagement`` <-> Kustomer conversation or note (kustomer-api.md §3.6, §3.7).

Ids: a conversation's engagement id is the conversation id; a note's is ``note:<noteId>``, so ids round-trip
and the backend knows which endpoint to call (:func:`engagement_id`, :func:`parse_engagement_id`).

Conversation rules:

* ``type`` comes from the conversation's channel (``channels[0]``, else ``replyChannel``) through the table
  ``settings["engagement"]["channel_types"]`` (default ``{"voice": "call", "email": "email"}``); any other
  channel (chat, sms, whatsapp...) or no channel gives ``settings["engagement"]["default_type"]`` (default
  ``"email"``). **Lossy**: Kustomer has no meeting/task conversations and most channels fold into the
  default type. On create only, a written ``type`` sets ``replyChannel`` to the first channel of the table
  mapping to it (``call`` -> ``voice``); other types are not written. Updates never change the channel.
* ``direction``: ``in`` <-> ``inbound``, ``out`` <-> ``outbound``.
* ``status``: ``open`` -> ``inProgress``, ``snoozed`` -> ``planned``, ``done`` -> ``completed``; written
  ``planned`` -> ``snoozed``, ``inProgress`` -> ``open``, ``completed`` and ``canceled`` -> ``done``
  (**lossy**: ``canceled`` reads back as ``completed``). A ``None`` status is not written.
* ``title`` <-> ``name``; ``description`` <- ``preview`` (read-only: the backend, not the mapper, turns a
  written description into a note).
* ``started_at`` <- ``createdAt`` (required); ``ended_at`` <- ``endedAt``, or ``lastDone.createdAt`` when
  the status is done; ``duration`` = whole seconds between them. All three are read-only.
* ``owner`` <- ``assignedUsers[0]`` and ``users`` <- ``assignedUsers`` (**the owner is also the first
  user**); written as ``assignedUsers = [owner] + users`` (deduplicated, at most 10: more is a
  ``MappingError``). When only one of ``owner``/``users`` is written, the other comes from
  ``context.current``.
* ``contacts`` <-> the ``customer`` relationship: a conversation has exactly one. Creating needs exactly
  one contact; writing more than one (or none) is a ``MappingError``.
* ``companies`` / ``opportunities`` <-> the ``Id`` custom attributes named by
  ``settings["engagement"]["companies_attribute"]`` / ``["opportunities_attribute"]`` (default: none; then
  they read as empty and writing a non-empty list is a ``MappingError``). Those attributes are not custom
  fields.
* other custom attributes <-> ``custom_fields``.

Note rules (``type`` = ``note``): ``description`` <-> ``body``; ``title`` is ``None``; ``status`` is
``completed``; ``started_at`` <- ``createdAt``; ``owner`` <- the ``createdBy`` relationship (a user);
``contacts`` <- the ``customer`` relationship; the conversation link is kept in ``raw`` only. Writing a note
gives ``{"body": description}`` (required on create) plus ``customer`` when one contact is given; the
backend decides the conversation. Every other field is **not written** for notes, and notes have no custom
attributes (a non-empty ``custom_fields`` is a ``MappingError``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Final, Literal

from connectors.errors import ConfigurationError, MappingError
from connectors.kustomer.custom_fields import is_object_id
from connectors.kustomer.mappers._common import (
    KustomerMapper,
    Sources,
    View,
    check_no_custom_fields,
    custom_value,
    id_list,
    linked_id,
    opt_list,
    opt_mapping,
    opt_str,
    parse_timestamp,
    read_custom,
    ref,
    ref_id,
    ref_ids,
    ref_value,
    relationship_id,
    relationship_ids,
    write_custom,
)
from connectors.mapping import MappingContext
from unified_models import Engagement

__all__ = [
    "DEFAULT_CHANNEL_TYPES",
    "DEFAULT_ENGAGEMENT_TYPE",
    "MAX_ASSIGNED_USERS",
    "NOTE_PREFIX",
    "EngagementKind",
    "EngagementMapper",
    "EngagementSettings",
    "check_engagement_ref",
    "engagement_id",
    "engagement_settings",
    "parse_engagement_id",
]

EngagementKind = Literal["conversation", "note"]
"""The Kustomer object behind an engagement."""

NOTE_PREFIX: Final = "note:"
"""Prefix of the engagement id of a note."""

DEFAULT_CHANNEL_TYPES: Final[Mapping[str, str]] = {"voice": "call", "email": "email"}
"""Default conversation channel -> engagement type table."""
DEFAULT_ENGAGEMENT_TYPE: Final = "email"
"""Default engagement type of a conversation whose channel is not in the table."""
MAX_ASSIGNED_USERS: Final = 10
"""Kustomer's limit on ``assignedUsers``."""

_ENGAGEMENT_TYPES: Final = frozenset({"call", "meeting", "email", "task", "note"})
_DIRECTION_IN: Final = {"in": "inbound", "out": "outbound"}
_DIRECTION_OUT: Final = {"inbound": "in", "outbound": "out"}
_STATUS_IN: Final = {"open": "inProgress", "snoozed": "planned", "done": "completed"}
_STATUS_OUT: Final = {"planned": "snoozed", "inProgress": "open", "completed": "done", "canceled": "done"}
MODEL: Final = "crmEngagement"


def engagement_id(kind: EngagementKind, kustomer_id: str) -> str:
    """Return the engagement id of a Kustomer conversation or note.

    Args:
        kind: ``"conversation"`` or ``"note"``.
        kustomer_id: the Kustomer object id.

    Returns:
        The conversation id itself, or ``note:<noteId>``.
    """
    return f"{NOTE_PREFIX}{kustomer_id}" if kind == "note" else kustomer_id


def parse_engagement_id(value: str) -> tuple[EngagementKind, str]:
    """Split an engagement id into the Kustomer object kind and id.

    Args:
        value: an engagement id (``"5f..."`` or ``"note:5f..."``).

    Returns:
        ``("conversation", id)`` or ``("note", noteId)``.

    Raises:
        MappingError: ``note:`` without an id, or an empty id (``field`` is ``id``).
    """
    if value.startswith(NOTE_PREFIX):
        note = value[len(NOTE_PREFIX) :]
        if not note:
            raise MappingError("'note:' must be followed by the note id", model=MODEL, field="id")
        return "note", note
    if not value:
        raise MappingError("an engagement id cannot be empty", model=MODEL, field="id")
    return "conversation", value


def check_engagement_ref(value: str, model: str, field: str) -> str:
    """Check an engagement id used as a KObject reference value (a conversation id).

    Kustomer ``Id`` attributes reference one target type; the CRM schema targets conversations, so note
    engagements (``note:<id>``) cannot be referenced and are refused here rather than by Kustomer.

    Returns:
        ``value`` unchanged.

    Raises:
        MappingError: a note engagement, or not a 24-hex-digit object id.
    """
    try:
        kind, kustomer_id = parse_engagement_id(value)
    except MappingError as exc:
        raise MappingError(exc.reason, model=model, field=field) from exc
    if kind == "note":
        raise MappingError(
            f"{value!r} is a note; only conversation engagements can be linked (the attribute targets conversations)",
            model=model,
            field=field,
        )
    if not is_object_id(kustomer_id):
        raise MappingError(f"expected a conversation id, got {value!r}", model=model, field=field)
    return value


@dataclass(frozen=True, slots=True)
class EngagementSettings:
    """``settings["engagement"]``: how conversations map to engagements.

    Attributes:
        channel_types: conversation channel -> engagement type.
        default_type: the type of any other channel.
        companies_attribute: the ``Id`` custom attribute holding the engagement's companies, if any.
        opportunities_attribute: the ``Id`` custom attribute holding its opportunities, if any.
    """

    channel_types: Mapping[str, str]
    default_type: str
    companies_attribute: str | None
    opportunities_attribute: str | None

    @property
    def reserved(self) -> dict[str, str]:
        """Configured attribute -> the unified field it carries."""
        out: dict[str, str] = {}
        if self.companies_attribute:
            out[self.companies_attribute] = "companies"
        if self.opportunities_attribute:
            out[self.opportunities_attribute] = "opportunities"
        return out

    def channel_for(self, engagement_type: str) -> str | None:
        """The first channel mapping to ``engagement_type``, or ``None``."""
        for channel, mapped in self.channel_types.items():
            if mapped == engagement_type:
                return channel
        return None


_DEFAULT_SETTINGS: Final = EngagementSettings(DEFAULT_CHANNEL_TYPES, DEFAULT_ENGAGEMENT_TYPE, None, None)


def engagement_settings(settings: Mapping[str, Any] | None) -> EngagementSettings:
    """Read ``settings["engagement"]`` (every key optional).

    Raises:
        ConfigurationError: a value of the wrong type or an unknown engagement type.
    """
    raw = (settings or {}).get("engagement")
    if not raw:
        return _DEFAULT_SETTINGS
    if not isinstance(raw, Mapping):
        raise ConfigurationError("settings['engagement'] must be a mapping")
    table = raw.get("channel_types", DEFAULT_CHANNEL_TYPES)
    default_type = raw.get("default_type", DEFAULT_ENGAGEMENT_TYPE)
    if not isinstance(table, Mapping) or not all(
        isinstance(k, str) and v in _ENGAGEMENT_TYPES for k, v in table.items()
    ):
        raise ConfigurationError(
            "settings['engagement']['channel_types'] must map channels to one of "
            + ", ".join(sorted(_ENGAGEMENT_TYPES))
        )
    if default_type not in _ENGAGEMENT_TYPES:
        raise ConfigurationError(f"settings['engagement']['default_type'] must be one of {sorted(_ENGAGEMENT_TYPES)}")
    attrs: list[str | None] = []
    for key in ("companies_attribute", "opportunities_attribute"):
        value = raw.get(key)
        if value is not None and not (isinstance(value, str) and value.endswith("Id") and len(value) > 2):
            raise ConfigurationError(f"settings['engagement'][{key!r}] must be the name of an Id custom attribute")
        attrs.append(value or None)
    return EngagementSettings(dict(table), default_type, attrs[0], attrs[1])


def _assigned(values: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for value in values:
        if value:
            seen.setdefault(value, None)
    return list(seen)


class EngagementMapper(KustomerMapper[Engagement]):
    """Maps Kustomer conversations and notes to ``crmEngagement`` and back."""

    model = MODEL
    unified_type = Engagement
    field_paths: ClassVar = {
        "title": "attributes.name",
        "description": "attributes.preview",
        "started_at": "attributes.createdAt",
        "custom_fields": "attributes.custom",
    }

    # -- read --

    def read(self, view: View, context: MappingContext, sources: Sources) -> dict[str, Any]:
        """Read a conversation's or a note's fields (see the module docstring)."""
        started = parse_timestamp(view.attributes.get("createdAt"), MODEL, "attributes.createdAt")
        if started is None:
            raise MappingError("missing createdAt (the engagement's start)", model=MODEL, field="attributes.createdAt")
        if view.type == "note":
            return self._read_note(view, started, sources)
        return self._read_conversation(view, started, context, sources)

    def _read_note(self, view: View, started: datetime, sources: Sources) -> dict[str, Any]:
        sources["description"] = "attributes.body"
        sources["owner"] = "relationships.createdBy.data.id"
        sources["contacts"] = ["relationships.customer.data.id"]
        customer = relationship_id(view, "customer", MODEL)
        return {
            "id": engagement_id("note", view.id),
            "type": "note",
            "status": "completed",
            "title": None,
            "description": view.attributes.get("body"),
            "started_at": started,
            "owner": ref("genericUser", relationship_id(view, "createdBy", MODEL)),
            "contacts": [{"model": "genericContact", "id": customer}] if customer else [],
        }

    def _read_conversation(
        self, view: View, started: datetime, context: MappingContext, sources: Sources
    ) -> dict[str, Any]:
        cfg = engagement_settings(context.settings)
        a = view.attributes
        channels = opt_list(a, "channels", MODEL)
        channel = channels[0] if channels else opt_str(a, "replyChannel", MODEL)
        if isinstance(channel, str) and channel:
            engagement_type = cfg.channel_types.get(channel, cfg.default_type)
        else:
            engagement_type = cfg.default_type
        status = opt_str(a, "status", MODEL)
        ended_path = "attributes.endedAt"
        ended = parse_timestamp(a.get("endedAt"), MODEL, ended_path)
        if ended is None and status == "done":
            last_done = opt_mapping(a, "lastDone", MODEL)
            ended_path = "attributes.lastDone.createdAt"
            ended = parse_timestamp(last_done.get("createdAt"), MODEL, ended_path)
        if ended is not None and ended < started:
            raise MappingError("the conversation ends before it starts", model=MODEL, field=ended_path)
        assigned = id_list(a, "assignedUsers", MODEL)
        if assigned is None:
            assigned = relationship_ids(view, "assignedUsers", MODEL) or []
        users = [{"model": "genericUser", "id": user} for user in assigned]
        customer, customer_path = linked_id(view, "customer", MODEL)
        sources["contacts"] = [customer_path]
        custom = opt_mapping(a, "custom", MODEL)
        companies: Any = []
        opportunities: Any = []
        if cfg.companies_attribute:
            path = f"attributes.custom.{cfg.companies_attribute}"
            value = custom.get(cfg.companies_attribute)
            companies = ref_value(value, "genericCompany", MODEL, path, sources, "companies", multi=True)
        if cfg.opportunities_attribute:
            path = f"attributes.custom.{cfg.opportunities_attribute}"
            value = custom.get(cfg.opportunities_attribute)
            opportunities = ref_value(value, "crmOpportunity", MODEL, path, sources, "opportunities", multi=True)
        preview = a.get("preview")
        if isinstance(preview, Mapping):
            text = preview.get("text")
            preview = text if isinstance(text, str) else None
        return {
            "type": engagement_type,
            "direction": self._lookup(_DIRECTION_IN, opt_str(a, "direction", MODEL), "attributes.direction"),
            "status": self._lookup(_STATUS_IN, status, "attributes.status"),
            "title": a.get("name"),
            "description": preview,
            "started_at": started,
            "ended_at": ended,
            "duration": int((ended - started).total_seconds()) if ended is not None else None,
            "owner": users[0] if users else None,
            "users": users,
            "contacts": [{"model": "genericContact", "id": customer}] if customer else [],
            "companies": companies,
            "opportunities": opportunities,
            "custom_fields": read_custom(a, context.field_mapping, MODEL, exclude=frozenset(cfg.reserved)),
        }

    @staticmethod
    def _lookup(table: Mapping[str, str], value: str | None, path: str) -> str | None:
        if value is None:
            return None
        try:
            return table[value]
        except KeyError:
            expected = ", ".join(table)
            raise MappingError(f"unknown value {value!r} (expected {expected})", model=MODEL, field=path) from None

    # -- write --

    def write(self, obj: Engagement, fields: set[str], current: View | None, context: MappingContext) -> dict[str, Any]:
        """Build a conversation or note create/update body (see the module docstring)."""
        if self._write_kind(obj, current) == "note":
            return self._write_note(obj, fields, current)
        return self._write_conversation(obj, fields, current, context)

    @staticmethod
    def _write_kind(obj: Engagement, current: View | None) -> EngagementKind:
        kinds: dict[str, EngagementKind] = {}
        if obj.type is not None:
            kinds["type"] = "note" if obj.type == "note" else "conversation"
        if obj.id:
            kinds["id"] = parse_engagement_id(obj.id)[0]
        if current is not None:
            kinds["current"] = "note" if current.type == "note" else "conversation"
        found = set(kinds.values())
        if len(found) > 1:
            raise MappingError(
                "a note cannot become a conversation or the other way round "
                + ", ".join(f"({key}: {kind})" for key, kind in kinds.items()),
                model=MODEL,
                field="type",
            )
        return found.pop() if found else "conversation"

    @staticmethod
    def _write_note(obj: Engagement, fields: set[str], current: View | None) -> dict[str, Any]:
        check_no_custom_fields(obj, fields, MODEL, "notes")
        body: dict[str, Any] = {}
        if "description" in fields or current is None:
            if obj.description is None:
                raise MappingError("a note needs a description (its body)", model=MODEL, field="description")
            body["body"] = obj.description
        if "contacts" in fields:
            contacts = ref_ids(obj.contacts)
            if len(contacts) > 1:
                raise MappingError("a note belongs to at most one contact", model=MODEL, field="contacts")
            if contacts:
                body["customer"] = contacts[0]
        return body

    @staticmethod
    def _write_conversation(
        obj: Engagement, fields: set[str], current: View | None, context: MappingContext
    ) -> dict[str, Any]:
        cfg = engagement_settings(context.settings)
        body: dict[str, Any] = {}
        if current is None and "type" in fields and obj.type is not None:
            channel = cfg.channel_for(obj.type)
            if channel is not None:
                body["replyChannel"] = channel
        if "direction" in fields:
            body["direction"] = _DIRECTION_OUT[obj.direction] if obj.direction is not None else None
        if "status" in fields and obj.status is not None:
            body["status"] = _STATUS_OUT[obj.status]
        if "title" in fields:
            body["name"] = obj.title
        if "owner" in fields or "users" in fields:
            current_assigned: list[str] = []
            if current is not None:
                current_assigned = id_list(current.attributes, "assignedUsers", MODEL) or []
            current_owner = current_assigned[0] if current_assigned else None
            owner = ref_id(obj.owner) if "owner" in fields else current_owner
            users = ref_ids(obj.users) if "users" in fields else current_assigned
            assigned = _assigned(([owner] if owner else []) + users)
            if len(assigned) > MAX_ASSIGNED_USERS:
                raise MappingError(
                    f"a conversation has at most {MAX_ASSIGNED_USERS} assigned users, got {len(assigned)}",
                    model=MODEL,
                    field="users",
                )
            body["assignedUsers"] = assigned
        if "contacts" in fields or current is None:
            contacts = ref_ids(obj.contacts)
            if len(contacts) != 1:
                raise MappingError(
                    f"a conversation belongs to exactly one contact (its customer), got {len(contacts)}",
                    model=MODEL,
                    field="contacts",
                )
            body["customer"] = contacts[0]
        custom: dict[str, Any] = {}
        for field, attribute in (
            ("companies", cfg.companies_attribute),
            ("opportunities", cfg.opportunities_attribute),
        ):
            if field not in fields:
                continue
            ids = ref_ids(getattr(obj, field))
            if attribute is None:
                if ids:
                    raise MappingError(
                        f"{field} need settings['engagement']['{field}_attribute'] (an Id custom attribute)",
                        model=MODEL,
                        field=field,
                    )
                continue
            custom[attribute] = custom_value(attribute, ids, MODEL, field)
        if "custom_fields" in fields and obj.custom_fields:
            custom.update(write_custom(obj.custom_fields, context.field_mapping, MODEL, reserved=cfg.reserved))
        if custom:
            body["custom"] = custom
        return body
