"""``crmEngagement`` over Kustomer conversations and notes.

A conversation is an engagement whose type comes from its channel; a note is an engagement of type
``note`` whose id is ``note:<noteId>`` (so ids round-trip to the right endpoint). Listing without a
``type`` filter returns conversations first, then notes (one cursor covers both phases). Creating an
engagement with a ``description`` creates the conversation, then a note holding the description.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from connectors.errors import MappingError, QueryError
from connectors.kustomer.mappers.engagement import engagement_id, parse_engagement_id
from connectors.kustomer.resources import KustomerBackend, ResourceSpec, _data_object, _eq, expand_refs
from connectors.runtime.connector import ListQuery
from unified_models import Engagement, Page, UnifiedResource

if TYPE_CHECKING:
    from connectors.kustomer.connector import KustomerConnector

__all__ = ["EngagementBackend"]

_STATUS = {"planned": "snoozed", "inProgress": "open", "completed": "done", "canceled": "done"}


def _status_filter(value: Any) -> dict[str, Any]:
    values = value if isinstance(value, list) else [value]
    try:
        mapped = sorted({_STATUS[v] for v in values})
    except (KeyError, TypeError):
        raise QueryError(f"unknown status {value!r}; use {sorted(_STATUS)}", field="filters.status") from None
    return {"conversation_status": {"in": mapped}}


class EngagementBackend(KustomerBackend):
    """Engagements: conversations (``/v1/conversations``) and notes (``/v1/notes``)."""

    def __init__(self, connector: KustomerConnector) -> None:
        conversation = ResourceSpec(
            model="crmEngagement",
            collection="conversations",
            search_context="conversation",
            lookups={"externalId": "externalId"},
            needs_current=False,
            filters={
                "name": lambda v: {"conversation_name": {"contains": v}},
                "status": _status_filter,
                "contact": _eq("conversation_customer_id"),
                "tags": _eq("conversation_tags"),
                "channel": _eq("conversation_channels"),
            },
        )
        super().__init__(connector, conversation)
        note = ResourceSpec(
            model="crmEngagement",
            collection="notes",
            search_context="note",
            needs_current=False,
            filters={"contact": _eq("note_customer_id")},
        )
        self.notes = KustomerBackend(connector, note)

    def _channels_for(self, type_: str) -> builtins.list[str]:
        settings = self.session.connector_settings.get("engagement") or {}
        table: Mapping[str, str] = settings.get("channel_types") or {"voice": "call", "email": "email"}
        return sorted(channel for channel, kind in table.items() if kind == type_)

    def _split(self, query: ListQuery) -> tuple[str, ListQuery]:
        filters = dict(query.filters)
        wanted = filters.pop("type", None)
        if wanted is None:
            return "both", query
        if wanted == "note":
            return "notes", ListQuery(**{**_fields(query), "filters": filters})
        channels = self._channels_for(str(wanted))
        if not channels:
            raise QueryError(
                f"no Kustomer channel maps to type {wanted!r} (see the engagement.channel_types setting)",
                field="filters.type",
            )
        filters["channel"] = channels
        return "conversations", ListQuery(**{**_fields(query), "filters": filters})

    async def list(self, query: ListQuery, *, include_raw: bool = False) -> Page[UnifiedResource]:
        """Conversations, then notes (or only one of them with a ``type`` filter)."""
        if "ids" in query.filters:  # direct fetches; fetch() resolves note:<id> to the note endpoint
            return await super().list(query, include_raw=include_raw)
        phase, query = self._split(query)
        if phase == "notes":
            return await self.notes.list(query, include_raw=include_raw)
        if phase == "conversations":
            return await super().list(query, include_raw=include_raw)
        note_query = ListQuery(
            **{**_fields(query), "filters": {k: v for k, v in query.filters.items() if k == "contact"}}
        )
        if query.cursor and query.cursor.startswith("n~"):
            page = await self.notes.list(
                ListQuery(**{**_fields(note_query), "cursor": query.cursor[2:] or None}), include_raw=include_raw
            )
            return Page(data=page.data, next=f"n~{page.next}" if page.next else None)
        page = await super().list(query, include_raw=include_raw)
        if page.next is not None:
            return page
        # Conversations are exhausted: the next page starts the notes phase ("n~" + notes cursor).
        return Page(data=page.data, next="n~")

    async def fetch(self, id: str) -> dict[str, Any]:
        """``GET`` a conversation, or a note for ``note:<id>``."""
        kind, kustomer_id = parse_engagement_id(id)
        if kind == "note":
            return await self.notes.fetch(kustomer_id)
        return await super().fetch(kustomer_id)

    async def retrieve(self, id: str, *, expand: Sequence[str] = (), include_raw: bool = False) -> UnifiedResource:
        """One engagement; ``expand`` resolves owner/users/contacts references."""
        obj = self.to_unified(await self.fetch(id), include_raw=include_raw)
        if expand:
            obj = await expand_refs(self.connector, obj, expand)
        return obj

    async def create(self, obj: UnifiedResource, *, include_raw: bool = False) -> UnifiedResource:
        """Create a conversation (plus a note with the description), or a note for ``type='note'``."""
        if not isinstance(obj, Engagement):
            raise MappingError("expected an Engagement", model="crmEngagement")
        body = self.to_body(obj)
        if obj.type == "note":
            conversation = body.pop("conversation", None) or await self._conversation_for(body.pop("customer", None))
            body.pop("customer", None)
            created = await self.client.json(
                "POST", f"/v1/conversations/{conversation}/notes", json_body=body, idempotent=False
            )
            return self.to_unified(_data_object(created), include_raw=include_raw)
        created = _data_object(await self.client.json("POST", "/v1/conversations", json_body=body, idempotent=False))
        if obj.description:
            conversation_id = str(created.get("id"))
            await self.client.json(
                "POST",
                f"/v1/conversations/{conversation_id}/notes",
                json_body={"body": obj.description},
                idempotent=False,
            )
            created = await super().fetch(conversation_id)
        return self.to_unified(created, include_raw=include_raw)

    async def _conversation_for(self, customer: Any) -> str:
        """The conversation a new note goes on: the contact's latest one, else a new (done) one.

        Kustomer notes live on conversations; a unified note only names a contact.

        Raises:
            MappingError: the note names no contact.
        """
        if not isinstance(customer, str) or not customer:
            raise MappingError(
                "a note needs one contact: Kustomer attaches notes to that contact's conversation",
                model="crmEngagement",
                field="contacts",
            )
        body = await self.client.json(
            "GET", f"/v1/customers/{customer}/conversations", params={"page": 1, "pageSize": 1}
        )
        found = body.get("data") if isinstance(body, dict) else None
        if isinstance(found, list) and found and isinstance(found[0], dict) and found[0].get("id"):
            return str(found[0]["id"])
        created = await self.client.json(
            "POST",
            "/v1/conversations",
            json_body={"customer": customer, "name": "Notes", "status": "done"},
            idempotent=False,
        )
        return str(_data_object(created)["id"])

    async def update(self, id: str, obj: UnifiedResource, *, include_raw: bool = False) -> UnifiedResource:
        """``PATCH`` the conversation or the note."""
        kind, kustomer_id = parse_engagement_id(id)
        backend: KustomerBackend = self.notes if kind == "note" else self
        current = await self.fetch(id)
        body = self.to_body(obj, current=current)
        if not body:
            return self.to_unified(current, include_raw=include_raw)
        updated = await self.client.json("PATCH", backend.item_path(kustomer_id), json_body=body)
        return self.to_unified(_data_object(updated), include_raw=include_raw)

    async def delete(self, id: str) -> None:
        """``DELETE`` the conversation or the note."""
        kind, kustomer_id = parse_engagement_id(id)
        backend: KustomerBackend = self.notes if kind == "note" else self
        await self.client.request("DELETE", backend.item_path(kustomer_id))

    def item_path(self, id: str) -> str:
        """Path of a conversation (or of a note, for ``note:`` ids)."""
        kind, kustomer_id = parse_engagement_id(id) if ":" in id else ("conversation", id)
        collection = "notes" if kind == "note" else "conversations"
        return f"/v1/{collection}/{kustomer_id}"


def _fields(query: ListQuery) -> dict[str, Any]:
    return {
        "limit": query.limit,
        "cursor": query.cursor,
        "filters": dict(query.filters),
        "q": query.q,
        "fields": query.fields,
        "sort": query.sort,
    }


_ = engagement_id
