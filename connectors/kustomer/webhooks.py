"""Kustomer webhooks: outbound webhooks (subscribe, verify, normalise), virtual-webhook polls, inbound hooks.

The generic flow lives in :mod:`connectors.runtime.webhooks`; this is the Kustomer side of it
(kustomer-api.md §2.8, §2.9).

Native events (Kustomer outbound webhooks, at most 12 events each and 5 per org)
-------------------------------------------------------------------------------
===========================  =================================================================
unified event                Kustomer event
===========================  =================================================================
``genericContact::created``  ``kustomer.customer.create``
``genericContact::updated``  ``kustomer.customer.update``
``genericUser::*``           ``kustomer.user.create`` / ``.update``
``genericWorkspace::*``      ``kustomer.team.create`` / ``.update``
``crmEngagement::created``   ``kustomer.conversation.create`` (notes: polled)
``crmEngagement::updated``   ``kustomer.conversation.update``, and ``kustomer.message.create`` /
                             ``.update`` when the ``webhooks.message_events`` setting is on (the event then
                             names the message's conversation and carries no data: a message is not an
                             engagement, and a new message already updates its conversation)
===========================  =================================================================

A delivery is ``{id, name, org, partition, data, changes}`` with ``X-Kustomer-Webhook-Event`` and
``X-Kustomer-Webhook-Signature`` = lowercase hex HMAC-SHA256(webhook token, raw body). ``data`` is the
resource as ``GET`` returns it and is mapped directly (never re-fetched). Its version for the stale-update
check is ``(updatedAt, rev)``.

Virtual events (polled)
-----------------------
Kustomer pushes nothing for companies, KObjects (the CRM models and ``custom:<klass>``), notes and any
deletion. Poll specs:

* ``customer``, ``company``, ``conversation``, ``note``, ``kobject_<klass>`` — search (``POST
  /v1/customers/search``) for ``<ctx>_updated_at >= watermark`` sorted ascending, with ``includeDeleted``
  (tombstones become deletions), one fresh query per page so records updated meanwhile are never skipped;
  ties on the watermark timestamp are remembered by id. Deletions are also found by *reconciling ids*
  (``idsOnly`` search, keyset on ``<ctx>_id``) against the ids the poller knows, every ``reconcile_every``
  rounds. A record whose ``createdAt`` is at or after the previous watermark is ``created``, else ``updated``.
* ``users``, ``teams`` — not searchable: the whole list is compared with the known versions.

Settings (connection settings, key ``webhooks``)
------------------------------------------------
``message_events`` (false), ``deletions`` (``both`` | ``reconcile`` | ``tombstones``), ``reconcile_every``
(1), ``page_size`` (500), ``max_pages`` (20 queries per spec and round), ``settle_seconds`` (0: records
updated less than this long ago wait for the next round, for search-index lag — UNCONFIRMED for Kustomer),
``update_method`` (``PUT`` | ``PATCH`` | ``recreate``: how a webhook's events are changed; Kustomer's
documentation lists no update endpoint, UNCONFIRMED), ``max_outbound_webhooks`` (5).

Inbound hooks
-------------
:func:`send_to_hook` posts to ``/v1/hooks/web/{hash}`` (role ``org.hooks``; body at most 400 kb).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal

import httpx

from connectors.errors import (
    BadRequestError,
    ConfigurationError,
    NotFoundError,
    ResponseValidationError,
    WebhookPayloadError,
    WebhookSignatureError,
)
from connectors.kustomer.client import (
    _ESCAPED_SURROGATE,
    KustomerClient,
    _without_lone_surrogates,
    error_from_response,
)
from connectors.kustomer.klasses import klass_name
from connectors.kustomer.mappers.engagement import engagement_id
from connectors.runtime.ratelimit import Bucket
from connectors.runtime.transport import EXT_ATTEMPTS, EXT_BUCKETS, EXT_HEADERS_BUCKET, EXT_IDEMPOTENT
from connectors.runtime.webhooks import (
    Change,
    EventPlan,
    InboundDelivery,
    PollOutcome,
    RemoteWebhook,
)
from unified_models import UnifiedResource

if TYPE_CHECKING:
    from connectors.kustomer.connector import KustomerConnector
    from connectors.runtime.connection import Connection

__all__ = [
    "EVENT_HEADER",
    "HOOK_MAX_BYTES",
    "MAX_EVENTS_PER_WEBHOOK",
    "MAX_OUTBOUND_WEBHOOKS",
    "MESSAGE_EVENTS",
    "MODELS",
    "NATIVE_EVENTS",
    "SIGNATURE_HEADER",
    "HookResult",
    "KustomerWebhookSettings",
    "KustomerWebhooks",
    "send_to_hook",
    "sign",
    "verify_signature",
]

SIGNATURE_HEADER: Final = "x-kustomer-webhook-signature"
EVENT_HEADER: Final = "x-kustomer-webhook-event"
HOOK_MAX_BYTES: Final = 400 * 1024
"""Largest body an inbound web hook accepts (kustomer-api.md §2.8: 400 kb, else 413)."""
MAX_OUTBOUND_WEBHOOKS: Final = 5
MAX_EVENTS_PER_WEBHOOK: Final = 12

MODELS: Final[tuple[str, ...]] = (
    "genericContact",
    "genericCompany",
    "genericUser",
    "genericWorkspace",
    "crmOpportunity",
    "crmPipeline",
    "crmStage",
    "crmEngagement",
)
"""Models with events (plus ``custom:<klass>``)."""

NATIVE_EVENTS: Final[Mapping[tuple[str, str], tuple[str, ...]]] = {
    ("genericContact", "created"): ("kustomer.customer.create",),
    ("genericContact", "updated"): ("kustomer.customer.update",),
    ("genericUser", "created"): ("kustomer.user.create",),
    ("genericUser", "updated"): ("kustomer.user.update",),
    ("genericWorkspace", "created"): ("kustomer.team.create",),
    ("genericWorkspace", "updated"): ("kustomer.team.update",),
    ("crmEngagement", "created"): ("kustomer.conversation.create",),
    ("crmEngagement", "updated"): ("kustomer.conversation.update",),
}
"""(model, trigger) -> the Kustomer events that push it."""

MESSAGE_EVENTS: Final[tuple[str, ...]] = ("kustomer.message.create", "kustomer.message.update")
"""Message events: ``crmEngagement::updated`` of the message's conversation (``message_events`` setting)."""

_EVENT_CHANGES: Final[Mapping[str, tuple[str, str]]] = {
    event: key for key, events in NATIVE_EVENTS.items() for event in events
}
_MODEL_SPECS: Final[Mapping[str, tuple[str, ...]]] = {
    "genericContact": ("customer",),
    "genericCompany": ("company",),
    "genericUser": ("users",),
    "genericWorkspace": ("teams",),
    "crmEngagement": ("conversation", "note"),
}
_SNAPSHOT_SPECS: Final = {"users": "/v1/users", "teams": "/v1/teams"}
_HEX64: Final = re.compile(r"[0-9a-f]{64}")
_HOOK_PATH: Final = re.compile(r"/v1/hooks/web/[A-Za-z0-9_-]{1,200}/?")
_SEARCH_PATH: Final = "/v1/customers/search"
_DELETED_VERSION: Final = "~"


def sign(token: str, body: bytes) -> str:
    """Kustomer's ``X-Kustomer-Webhook-Signature``: lowercase hex HMAC-SHA256 of the raw body.

    Args:
        token: the outbound webhook's token.
        body: the raw delivery body.

    Returns:
        The signature.
    """
    return hmac.new(token.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(token: str, body: bytes, signature: str) -> bool:
    """Whether ``signature`` is Kustomer's signature of ``body`` with ``token`` (constant-time compare).

    Args:
        token: the webhook token.
        body: the raw body.
        signature: the header value (lowercase hex; an ``sha256=`` prefix is tolerated).

    Returns:
        Whether it matches.
    """
    candidate = signature.strip().lower().removeprefix("sha256=")
    return hmac.compare_digest(sign(token, body).encode(), candidate.encode())


@dataclass(frozen=True, slots=True)
class KustomerWebhookSettings:
    """The ``webhooks`` connection setting (see the module docstring)."""

    message_events: bool = False
    deletions: Literal["both", "reconcile", "tombstones"] = "both"
    reconcile_every: int = 1
    page_size: int = 500
    max_pages: int = 20
    settle_seconds: float = 0.0
    update_method: Literal["PUT", "PATCH", "recreate"] = "PUT"
    max_outbound_webhooks: int = MAX_OUTBOUND_WEBHOOKS

    @classmethod
    def from_settings(cls, value: Any) -> KustomerWebhookSettings:
        """Read and validate ``settings["webhooks"]``.

        Raises:
            ConfigurationError: an unknown key or a bad value (names it).
        """
        if value is None:
            return cls()
        if not isinstance(value, Mapping):
            raise ConfigurationError("settings['webhooks'] must be a mapping")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(value) - known)
        if unknown:
            raise ConfigurationError(f"settings['webhooks'] has unknown key(s): {', '.join(unknown)}")
        checks: dict[str, Any] = {
            "message_events": lambda v: isinstance(v, bool),
            "deletions": lambda v: v in ("both", "reconcile", "tombstones"),
            "reconcile_every": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
            "page_size": lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 500,
            "max_pages": lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 100,
            "settle_seconds": lambda v: isinstance(v, int | float) and not isinstance(v, bool) and v >= 0,
            "update_method": lambda v: v in ("PUT", "PATCH", "recreate"),
            "max_outbound_webhooks": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
        }
        for key, item in value.items():
            if not checks[key](item):
                raise ConfigurationError(f"settings['webhooks'][{key!r}] has an invalid value {item!r}")
        return cls(**dict(value))


def _parse_ms(value: Any) -> int | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return round(parsed.timestamp() * 1000)


def _when(value: Any, default: float) -> datetime:
    ms = _parse_ms(value)
    return datetime.fromtimestamp(ms / 1000 if ms is not None else default, UTC)


def _attrs(resource: Mapping[str, Any]) -> Mapping[str, Any]:
    attrs = resource.get("attributes")
    return attrs if isinstance(attrs, Mapping) else {}


def version_of(resource: Mapping[str, Any]) -> str | None:
    """A sortable version of a Kustomer resource: ``updatedAt`` (ms) then ``rev``; ``None`` without a date."""
    attrs = _attrs(resource)
    ms = _parse_ms(attrs.get("updatedAt"))
    if ms is None:
        return None
    rev = attrs.get("rev")
    rev_n = rev if isinstance(rev, int) and not isinstance(rev, bool) and rev >= 0 else 0
    return f"{ms:015d}.{rev_n:012d}"


def _is_deleted(resource: Mapping[str, Any]) -> bool:
    attrs = _attrs(resource)
    return attrs.get("deleted") is True or bool(attrs.get("deletedAt"))


def _seen(marks: frozenset[str], rid: str) -> bool:
    """Whether ``rid`` is among the ``id@version`` marks of the records already reported at the watermark."""
    return any(m.partition("@")[0] == rid for m in marks)


def _data_list(body: Any) -> list[dict[str, Any]]:
    if isinstance(body, dict) and isinstance(body.get("data"), list):
        return [r for r in body["data"] if isinstance(r, dict) and isinstance(r.get("id"), str)]
    raise ResponseValidationError("expected a JSON:API list with 'data'")


def _has_next(body: Any, count: int, size: int) -> bool:
    links = body.get("links") if isinstance(body, dict) else None
    if isinstance(links, dict) and "next" in links:
        return bool(links["next"]) and count > 0
    return count >= size


def _remote(item: Any) -> RemoteWebhook:
    if not isinstance(item, dict) or not isinstance(item.get("id"), str):
        raise ResponseValidationError("expected an outbound webhook resource")
    attrs = _attrs(item)
    token = attrs.get("token")
    return RemoteWebhook(
        id=item["id"],
        name=str(attrs.get("name") or ""),
        url=str(attrs.get("url") or ""),
        events=tuple(str(e) for e in attrs.get("events") or ()),
        token=token if isinstance(token, str) and token else None,
    )


class KustomerWebhooks:
    """The Kustomer side of webhooks for one connection (``connector.webhook_backend()``).

    Args:
        connector: the connection's Kustomer connector.
    """

    connector_id: str = "kustomer"
    max_events_per_webhook: int = MAX_EVENTS_PER_WEBHOOK

    def __init__(self, connector: KustomerConnector) -> None:
        self.connector = connector
        self.session = connector.session
        self.client: KustomerClient = connector.client
        self.options = KustomerWebhookSettings.from_settings(self.session.connector_settings.get("webhooks"))
        self.max_webhooks = self.options.max_outbound_webhooks

    def __repr__(self) -> str:
        return f"KustomerWebhooks(connection={self.session.record.id!r})"

    # -- plans ------------------------------------------------------------------------------------------

    def models(self) -> tuple[str, ...]:
        """Models with events (``custom:<klass>`` must be named explicitly)."""
        return MODELS

    def _check_model(self, model: str) -> None:
        if model in MODELS or (model.startswith("custom:") and len(model) > len("custom:")):
            return
        raise ConfigurationError(
            f"Kustomer has no webhook events for model {model!r}; use one of {', '.join(MODELS)} or custom:<klass>"
        )

    def specs_for(self, model: str) -> tuple[str, ...]:
        """The poll specs that observe ``model``."""
        self._check_model(model)
        if model in _MODEL_SPECS:
            return _MODEL_SPECS[model]
        return (f"kobject_{klass_name(model, self.session.connector_settings)}",)

    def model_of(self, spec: str) -> str:
        """The unified model a poll spec reports.

        Raises:
            ConfigurationError: an unknown spec.
        """
        for model, specs in _MODEL_SPECS.items():
            if spec in specs:
                return model
        if spec.startswith("kobject_"):
            klass = spec[len("kobject_") :]
            for model in ("crmOpportunity", "crmPipeline", "crmStage"):
                if klass_name(model, self.session.connector_settings) == klass:
                    return model
            return f"custom:{klass}"
        raise ConfigurationError(f"unknown Kustomer poll spec {spec!r}")

    def event_plan(self, model: str, trigger: str, *, native: bool) -> EventPlan:
        """How ``model::trigger`` is served (see the module docstring).

        Raises:
            ConfigurationError: an unknown model.
        """
        self._check_model(model)
        events = NATIVE_EVENTS.get((model, trigger)) if native else None
        if events:
            if (model, trigger) == ("crmEngagement", "updated") and self.options.message_events:
                events = events + MESSAGE_EVENTS
            return EventPlan(native=events, polls=("note",) if model == "crmEngagement" else ())
        return EventPlan(polls=self.specs_for(model))

    def operation_for(self, model: str) -> str:
        """The read operation a subscription to ``model`` needs."""
        self._check_model(model)
        return "custom::list" if model.startswith("custom:") else f"{model}::list"

    async def org_key(self) -> str:
        """The Kustomer org id of the connection (from its identity, else ``GET /v1/auth/tokens/current``).

        Raises:
            ConfigurationError: Kustomer did not say which org the credential belongs to.
        """
        org = self.session.record.metadata.get("orgId")
        if not org:
            org = (await self.connector.identify()).org_id
        if not org:
            raise ConfigurationError("cannot tell the Kustomer org of this connection (no org id in its identity)")
        return str(org)

    # -- outbound webhooks ------------------------------------------------------------------------------

    async def list_remote(self) -> list[RemoteWebhook]:
        """``GET /v1/outbound-webhooks`` (every page)."""
        out: list[RemoteWebhook] = []
        for page in range(1, 51):
            body = await self.client.json("GET", "/v1/outbound-webhooks", params={"page": page, "pageSize": 100})
            data = _data_list(body)
            out.extend(_remote(item) for item in data)
            if not _has_next(body, len(data), 100):
                break
        return out

    async def create_remote(self, *, name: str, url: str, events: Sequence[str]) -> RemoteWebhook:
        """``POST /v1/outbound-webhooks`` (the response carries the token)."""
        body = await self.client.json(
            "POST",
            "/v1/outbound-webhooks",
            json_body={"name": name[:255], "url": url, "events": list(events)},
            idempotent=False,
        )
        return _remote((body or {}).get("data"))

    async def update_remote(self, id: str, *, name: str, url: str, events: Sequence[str]) -> RemoteWebhook:
        """Change a webhook's events with ``update_method`` (``recreate``: create a new one, then delete)."""
        if self.options.update_method == "recreate":
            try:
                created = await self.create_remote(name=name, url=url, events=events)
            except BadRequestError:  # no free slot: free this one first
                await self.delete_remote(id)
                return await self.create_remote(name=name, url=url, events=events)
            await self.delete_remote(id)
            return created
        body = await self.client.json(
            self.options.update_method,
            f"/v1/outbound-webhooks/{id}",
            json_body={"name": name[:255], "url": url, "events": list(events)},
        )
        return _remote((body or {}).get("data"))

    async def delete_remote(self, id: str) -> None:
        """``DELETE /v1/outbound-webhooks/{id}`` (already gone is fine)."""
        try:
            await self.client.request("DELETE", f"/v1/outbound-webhooks/{id}")
        except NotFoundError:
            return

    async def remote_token(self, id: str) -> str:
        """``GET /v1/outbound-webhooks/{id}``: its signing token.

        Raises:
            ResponseValidationError: the response holds no token.
        """
        body = await self.client.json("GET", f"/v1/outbound-webhooks/{id}")
        remote = _remote((body or {}).get("data"))
        if remote.token is None:
            raise ResponseValidationError(f"outbound webhook {id} came back without its token")
        return remote.token

    # -- receiving --------------------------------------------------------------------------------------

    def parse_delivery(self, raw_body: bytes, headers: Mapping[str, str]) -> InboundDelivery:
        """Read the signature header and the envelope's ``id``, ``name`` and ``org``.

        Raises:
            WebhookSignatureError: no or malformed ``X-Kustomer-Webhook-Signature``.
            WebhookPayloadError: not a JSON object, a field missing, or ``X-Kustomer-Webhook-Event``
                disagreeing with the body.
        """
        lowered = {k.lower(): v for k, v in headers.items()}
        signature = lowered.get(SIGNATURE_HEADER, "").strip().lower().removeprefix("sha256=")
        if not signature:
            raise WebhookSignatureError(
                "the X-Kustomer-Webhook-Signature header is missing", reason="missing_signature"
            )
        if not _HEX64.fullmatch(signature):
            raise WebhookSignatureError(
                "X-Kustomer-Webhook-Signature is not a hex HMAC-SHA256", reason="malformed_signature"
            )
        try:
            envelope = json.loads(raw_body)
        except (ValueError, UnicodeDecodeError):
            raise WebhookPayloadError("the delivery body is not JSON", reason="not_json") from None
        if _ESCAPED_SURROGATE.search(raw_body):  # "\ud83d" escapes: no unified string may hold them
            envelope = _without_lone_surrogates(envelope)
        if not isinstance(envelope, dict):
            raise WebhookPayloadError("the delivery body must be a JSON object", reason="not_object")
        for key in ("id", "name", "org"):
            value = envelope.get(key)
            if not isinstance(value, str) or not value or len(value) > 200:
                raise WebhookPayloadError(f"the delivery has no valid {key!r}", reason=f"missing_{key}")
        header_event = lowered.get(EVENT_HEADER)
        if header_event is not None and header_event.strip() != envelope["name"]:
            raise WebhookPayloadError(
                "X-Kustomer-Webhook-Event does not match the body's event name", reason="event_mismatch"
            )
        return InboundDelivery(
            routing_key=envelope["org"],
            event_id=envelope["id"],
            name=envelope["name"],
            signature=signature,
            envelope=envelope,
        )

    def verify(self, raw_body: bytes, signature: str, token: str) -> bool:
        """Constant-time check of Kustomer's HMAC-SHA256 signature."""
        return verify_signature(token, raw_body, signature)

    def normalize(self, delivery: InboundDelivery) -> list[Change]:
        """The unified change of a Kustomer event (none for events no model uses, e.g. tags).

        Raises:
            WebhookPayloadError: ``data`` is not a resource (``reason`` ``bad_data``).
        """
        name = delivery.name
        if name not in _EVENT_CHANGES and name not in MESSAGE_EVENTS:
            return []
        data = delivery.envelope.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not data["id"]:
            raise WebhookPayloadError(f"{name}: 'data' must be a resource with an id", reason="bad_data")
        attrs = data.get("attributes")
        if not isinstance(attrs, dict):
            raise WebhookPayloadError(f"{name}: 'data.attributes' must be an object", reason="bad_data")
        now = datetime.now(UTC).timestamp()
        if name in MESSAGE_EVENTS:
            rel = (data.get("relationships") or {}).get("conversation") or {}
            conversation = (rel.get("data") or {}).get("id") if isinstance(rel, dict) else None
            if not isinstance(conversation, str) or not conversation:
                raise WebhookPayloadError(f"{name}: the message names no conversation", reason="bad_data")
            return [
                Change(
                    model="crmEngagement",
                    trigger="updated",
                    object_id=conversation,
                    resource=None,
                    occurred_at=_when(attrs.get("updatedAt"), now),
                    version=None,
                    source_event=name,
                    key=f"crmEngagement:updated:{conversation}:message:{data['id']}",
                )
            ]
        model, trigger = _EVENT_CHANGES[name]
        object_id = engagement_id("conversation", data["id"]) if model == "crmEngagement" else data["id"]
        when = attrs.get("createdAt") if trigger == "created" else attrs.get("updatedAt")
        return [
            Change(
                model=model,
                trigger=trigger,
                object_id=object_id,
                resource=data,
                occurred_at=_when(when, now),
                version=version_of(data),
                source_event=name,
                key=f"{model}:{trigger}:{object_id}",
            )
        ]

    def to_unified(self, model: str, resource: Any) -> UnifiedResource:
        """Map with this connection's mapper, field mappings and settings."""
        return self.session.registry.to_unified(resource, self.session.mapping_context(model))

    # -- virtual webhooks -------------------------------------------------------------------------------

    def needs_known(self, spec: str, wanted: frozenset[str]) -> bool:
        """Snapshot specs always; search specs when deletions are wanted and reconciled."""
        if spec in _SNAPSHOT_SPECS:
            return True
        deletions = any(w.endswith("::deleted") for w in wanted)
        return deletions and self.options.deletions in ("both", "reconcile") and self.options.reconcile_every > 0

    def _context(self, spec: str) -> tuple[str, str]:
        """``(queryContext, attribute prefix)``: KObject attributes are ``kobject_*`` in every Klass context."""
        return spec, ("kobject" if spec.startswith("kobject_") else spec)

    def _unified_id(self, spec: str, kustomer_id: str) -> str:
        return engagement_id("note", kustomer_id) if spec == "note" else kustomer_id

    async def _search(self, body: Mapping[str, Any], *, page: int, size: int, ids_only: bool = False) -> Any:
        params: dict[str, Any] = {"page": page, "pageSize": size}
        if ids_only:
            params["idsOnly"] = "true"
        return await self.client.json(
            "POST", _SEARCH_PATH, params=params, json_body=dict(body), idempotent=True, search=True
        )

    async def _live_ids(self, spec: str) -> set[str]:
        """Every live id of a search context (``idsOnly``, keyset on the id: no 100-page cap)."""
        ctx, prefix = self._context(spec)
        size = self.options.page_size
        ids: set[str] = set()
        last: str | None = None
        while True:
            criteria = [{f"{prefix}_id": {"gt": last}}] if last else []
            body = {"queryContext": ctx, "and": criteria, "sort": [{f"{prefix}_id": "asc"}]}
            found = _data_list(await self._search(body, page=1, size=size, ids_only=True))
            batch = [str(r["id"]) for r in found]
            ids.update(batch)
            if len(batch) < size:
                return ids
            last = max(batch)

    async def _list_all(self, path: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for page in range(1, 10_001):
            body = await self.client.json("GET", path, params={"page": page, "pageSize": 500})
            data = _data_list(body)
            out.extend(data)
            if not _has_next(body, len(data), 500):
                break
        return out

    async def baseline(self, spec: str, *, wanted: frozenset[str], known: bool) -> PollOutcome:
        """Start a poller at the newest record (nothing older is reported), and list what exists."""
        if spec in _SNAPSHOT_SPECS:
            records = await self._list_all(_SNAPSHOT_SPECS[spec])
            return PollOutcome(
                changes=[],
                state={"round": 0},
                known_upsert={str(r["id"]): version_of(r) for r in records if not _is_deleted(r)},
            )
        ctx, prefix = self._context(spec)
        top = _data_list(
            await self._search(
                {"queryContext": ctx, "and": [], "sort": [{f"{prefix}_updated_at": "desc"}], "includeDeleted": True},
                page=1,
                size=1,
            )
        )
        state: dict[str, Any] = {"ts": None, "ids": [], "round": 0}
        if top:
            ts = _attrs(top[0]).get("updatedAt")
            ties = _data_list(
                await self._search(
                    {
                        "queryContext": ctx,
                        "and": [{f"{prefix}_updated_at": {"gte": ts}}],
                        "sort": [{f"{prefix}_updated_at": "asc"}],
                        "includeDeleted": True,
                    },
                    page=1,
                    size=self.options.page_size,
                )
            )
            state = {
                "ts": ts,
                "ids": sorted(f"{r['id']}@{version_of(r)}" for r in ties if _attrs(r).get("updatedAt") == ts),
                "round": 0,
            }
        upsert: dict[str, str | None] = {}
        if known:
            upsert = dict.fromkeys(sorted(await self._live_ids(spec)))
        return PollOutcome(changes=[], state=state, known_upsert=upsert)

    async def poll(
        self,
        spec: str,
        *,
        state: Mapping[str, Any],
        known: Mapping[str, str | None] | None,
        wanted: frozenset[str],
        now: float,
    ) -> PollOutcome:
        """One round of ``spec`` (see the module docstring)."""
        if spec in _SNAPSHOT_SPECS:
            return await self._poll_snapshot(spec, state=state, known=known or {}, now=now)
        return await self._poll_search(spec, state=state, known=known, wanted=wanted, now=now)

    async def _poll_snapshot(
        self, spec: str, *, state: Mapping[str, Any], known: Mapping[str, str | None], now: float
    ) -> PollOutcome:
        model = self.model_of(spec)
        records = await self._list_all(_SNAPSHOT_SPECS[spec])
        current = {str(r["id"]): r for r in records if not _is_deleted(r)}  # a listed-but-deleted user is gone
        changes: list[Change] = []
        upsert: dict[str, str | None] = {}
        for rid, record in current.items():
            version = version_of(record)
            if rid not in known:
                trigger = "created"
            elif version != known[rid]:
                trigger = "updated"
            else:
                continue
            upsert[rid] = version
            attrs = _attrs(record)
            changes.append(
                Change(
                    model=model,
                    trigger=trigger,
                    object_id=rid,
                    resource=record,
                    occurred_at=_when(attrs.get("createdAt" if trigger == "created" else "updatedAt"), now),
                    version=version,
                    source_event=spec,
                    key=f"{model}:{trigger}:{rid}:{version}",
                )
            )
        removed = frozenset(set(known) - set(current))
        for rid in sorted(removed):
            changes.append(self._deleted(model, spec, rid, None, now))
        return PollOutcome(
            changes=changes,
            state={"round": int(state.get("round", 0)) + 1},
            known_upsert=upsert,
            known_remove=removed,
        )

    def _deleted(self, model: str, spec: str, kustomer_id: str, when: Any, now: float) -> Change:
        object_id = self._unified_id(spec, kustomer_id)
        return Change(
            model=model,
            trigger="deleted",
            object_id=object_id,
            resource=None,
            occurred_at=_when(when, now),
            version=_DELETED_VERSION,
            source_event=spec,
            key=f"{model}:deleted:{object_id}",
        )

    async def _poll_search(
        self,
        spec: str,
        *,
        state: Mapping[str, Any],
        known: Mapping[str, str | None] | None,
        wanted: frozenset[str],
        now: float,
    ) -> PollOutcome:
        model = self.model_of(spec)
        ctx, prefix = self._context(spec)
        opts = self.options
        size = opts.page_size
        start_ts: str | None = state.get("ts")
        start_ms = _parse_ms(start_ts)
        start_tie = frozenset(state.get("ids") or ())
        ts, tie = start_ts, set(start_tie)
        rnd = int(state.get("round", 0))
        tombstones = opts.deletions in ("both", "tombstones")
        wants_deleted = any(w.endswith("::deleted") for w in wanted)
        settle_ms = (now - opts.settle_seconds) * 1000 if opts.settle_seconds > 0 else None
        changes: list[Change] = []
        upsert: dict[str, str | None] = {}
        removed: set[str] = set()
        for _ in range(opts.max_pages):
            criteria = [{f"{prefix}_updated_at": {"gte": ts}}] if ts else []
            body = {
                "queryContext": ctx,
                "and": criteria,
                "sort": [{f"{prefix}_updated_at": "asc"}],
                "includeDeleted": tombstones,
            }
            # A fresh query per page: records updated meanwhile move past the watermark instead of shifting
            # the pages. Past a page full of ties on the watermark, page numbers step over them.
            page = 1 + (len(tie) // size if ts else 0)
            records = _data_list(await self._search(body, page=page, size=size))
            progressed = False
            settled = True
            for record in records:
                rid = str(record["id"])
                attrs = _attrs(record)
                updated = attrs.get("updatedAt")
                updated_ms = _parse_ms(updated)
                if updated_ms is None:
                    continue
                if settle_ms is not None and updated_ms > settle_ms:
                    settled = False
                    break
                mark = f"{rid}@{version_of(record)}"
                if updated == ts and mark in tie:
                    continue
                progressed = True
                if updated != ts:
                    ts, tie = updated, set()
                tie.add(mark)
                if _is_deleted(record):
                    if rid in removed:
                        continue
                    removed.add(rid)
                    upsert.pop(rid, None)
                    changes.append(self._deleted(model, spec, rid, attrs.get("deletedAt") or updated, now))
                    continue
                if known is not None:
                    is_new = rid not in known and rid not in upsert
                else:
                    created_ms = _parse_ms(attrs.get("createdAt"))
                    is_new = start_ms is None or (
                        created_ms is not None
                        and (created_ms > start_ms or (created_ms == start_ms and not _seen(start_tie, rid)))
                    )
                trigger = "created" if is_new else "updated"
                version = version_of(record)
                upsert[rid] = version
                object_id = self._unified_id(spec, rid)
                changes.append(
                    Change(
                        model=model,
                        trigger=trigger,
                        object_id=object_id,
                        resource=record,
                        occurred_at=_when(attrs.get("createdAt") if is_new else updated, now),
                        version=version,
                        source_event=spec,
                        key=f"{model}:{trigger}:{object_id}:{version}",
                    )
                )
            if not settled or len(records) < size or not progressed:
                break
        if wants_deleted and known is not None and opts.reconcile_every and rnd % opts.reconcile_every == 0:
            live = await self._live_ids(spec)
            for rid in sorted((set(known) | set(upsert)) - live - removed):
                removed.add(rid)
                upsert.pop(rid, None)
                changes.append(self._deleted(model, spec, rid, None, now))
        return PollOutcome(
            changes=changes,
            state={"ts": ts, "ids": sorted(tie), "round": rnd + 1},
            known_upsert=upsert,
            known_remove=frozenset(removed),
        )

    # -- inbound hooks ----------------------------------------------------------------------------------

    async def send_to_hook(self, hook_url: str, payload: Any, **options: Any) -> HookResult:
        """:func:`send_to_hook` with this connection's client."""
        return await _send(self.client, hook_url, payload, **options)


@dataclass(frozen=True, slots=True)
class HookResult:
    """What Kustomer answered to a web hook post.

    Attributes:
        status_code: the HTTP status (2xx).
        transaction_id: the id of the recorded transaction, when Kustomer returned one.
        transaction: the response's ``data`` (the transaction a workflow is triggered with).
        size: bytes sent.
        attempts: attempts made (retries on rate limits and unsent requests).
        hook_url: where it was posted (no credentials).
    """

    status_code: int
    transaction_id: str | None
    transaction: Any = field(repr=False)
    size: int
    attempts: int
    hook_url: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "statusCode": self.status_code,
            "transactionId": self.transaction_id,
            "transaction": self.transaction,
            "size": self.size,
            "attempts": self.attempts,
            "hookUrl": self.hook_url,
        }


def _hook_target(client: KustomerClient, hook_url: str) -> str:
    """The absolute hook URL, refusing anything but ``/v1/hooks/web/<hash>`` on a Kustomer host we trust."""
    if not isinstance(hook_url, str) or not hook_url.strip():
        raise ConfigurationError("hook_url must be a Kustomer web hook URL or path (/v1/hooks/web/<hash>)")
    base = httpx.URL(client.base_url)
    raw = hook_url.strip()
    if re.fullmatch(r"[A-Za-z0-9_-]{1,200}", raw):
        raw = f"/v1/hooks/web/{raw}"
    try:
        url = base.join(raw) if raw.startswith("/") else httpx.URL(raw)
    except httpx.InvalidURL:
        raise ConfigurationError(f"hook_url is not a valid URL: {hook_url!r}") from None
    if url.query or url.fragment or url.userinfo or not _HOOK_PATH.fullmatch(url.path):
        raise ConfigurationError(f"hook_url must be a Kustomer web hook (/v1/hooks/web/<hash>), got {hook_url!r}")
    same_host = (url.scheme, url.host, url.port) == (base.scheme, base.host, base.port)
    kustomer_host = url.scheme == "https" and (url.host == "kustomerapp.com" or url.host.endswith(".kustomerapp.com"))
    base_is_kustomer = base.host == "kustomerapp.com" or base.host.endswith(".kustomerapp.com")
    if not (same_host or (kustomer_host and base_is_kustomer)):
        raise ConfigurationError(
            f"refusing to send the Kustomer credential to {url.scheme}://{url.host}: the hook must be on the "
            f"connection's Kustomer host ({base.host})"
        )
    return str(url)


async def _send(
    client: KustomerClient,
    hook_url: str,
    payload: Any,
    *,
    content_type: str | None = None,
    max_bytes: int = HOOK_MAX_BYTES,
    retry_server_errors: bool = False,
    hook_limit_per_minute: int = 1000,
) -> HookResult:
    target = _hook_target(client, hook_url)
    if content_type is not None:
        if isinstance(payload, str):
            body = payload.encode()
        elif isinstance(payload, bytes | bytearray):
            body = bytes(payload)
        else:
            raise WebhookPayloadError("with content_type, the payload must be bytes or str", reason="bad_payload")
        ctype = content_type
    else:
        try:
            body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            raise WebhookPayloadError(f"the payload is not JSON-serialisable: {exc}", reason="not_json") from None
        ctype = "application/json"
    if len(body) > max_bytes:
        raise WebhookPayloadError(
            f"the hook payload is {len(body)} bytes; Kustomer web hooks accept at most {max_bytes}",
            reason="too_large",
        )
    bucket = Bucket(f"{client.org_bucket.key}:hooks", hook_limit_per_minute, client.org_bucket.window)
    request = client.http.build_request(
        "POST",
        target,
        content=body,
        headers={"Content-Type": ctype},
        extensions={EXT_BUCKETS: (bucket,), EXT_HEADERS_BUCKET: bucket, EXT_IDEMPOTENT: retry_server_errors},
    )
    try:
        response = await client.http.send(request)
    except httpx.TimeoutException as exc:
        from connectors.errors import APITimeoutError

        raise APITimeoutError("Kustomer did not answer the hook post in time", method="POST", url=target) from exc
    except httpx.TransportError as exc:
        from connectors.errors import APIConnectionError

        raise APIConnectionError(
            f"could not reach Kustomer to post the hook: {type(exc).__name__}", method="POST", url=target
        ) from exc
    await response.aread()
    if response.status_code >= 400:
        raise error_from_response(response)
    transaction: Any = None
    if response.content:
        try:
            transaction = response.json().get("data")
        except (ValueError, AttributeError):
            transaction = None
    tx_id = transaction.get("id") if isinstance(transaction, dict) else None
    return HookResult(
        status_code=response.status_code,
        transaction_id=tx_id if isinstance(tx_id, str) else None,
        transaction=transaction,
        size=len(body),
        attempts=int(response.extensions.get(EXT_ATTEMPTS, 1)),
        hook_url=target,
    )


async def send_to_hook(
    connection_or_client: Connection | KustomerClient,
    hook_url: str,
    payload: Any,
    *,
    content_type: str | None = None,
    max_bytes: int = HOOK_MAX_BYTES,
    retry_server_errors: bool = False,
) -> HookResult:
    """Post ``payload`` to a Kustomer inbound web hook (``/v1/hooks/web/{hash}``), as the Okendo integration does.

    The payload is sent as JSON (or as given, with ``content_type``: form data or XML), after checking it is
    at most 400 kb. Rate limits (429) and requests that never reached Kustomer are retried; a 5xx is retried
    only with ``retry_server_errors=True``, because a hook post that Kustomer processed triggers its workflow
    again. The credential is only ever sent to the connection's Kustomer host.

    Args:
        connection_or_client: a Kustomer :class:`~connectors.runtime.connection.Connection` (needs the
            ``hooks::send`` operation: role ``org.hooks``) or a :class:`KustomerClient`.
        hook_url: the hook's address (``https://<org>.api.kustomerapp.com/v1/hooks/web/<hash>``), its path,
            or just the hash.
        payload: JSON-serialisable data, or bytes/str with ``content_type``.
        content_type: send ``payload`` as-is with this content type.
        max_bytes: the size limit (Kustomer: 400 kb).
        retry_server_errors: also retry 5xx answers (may run the workflow twice).

    Returns:
        The typed result (transaction id, attempts, size).

    Raises:
        WebhookPayloadError: too large (``reason="too_large"``) or not serialisable.
        ConfigurationError: not a web hook URL, or on another host.
        InsufficientPermissionsError: the credential lacks ``org.hooks``.
        APIStatusError: Kustomer refused it (``NotFoundError`` for an unknown hook, ...).
    """
    from connectors.errors import PermissionDeniedError

    options: dict[str, Any] = {
        "content_type": content_type,
        "max_bytes": max_bytes,
        "retry_server_errors": retry_server_errors,
    }
    if isinstance(connection_or_client, KustomerClient):
        return await _send(connection_or_client, hook_url, payload, **options)
    connection = connection_or_client
    connection.require("hooks::send")
    client = getattr(connection.connector, "client", None)
    if not isinstance(client, KustomerClient):
        raise ConfigurationError("send_to_hook needs a Kustomer connection")
    try:
        return await _send(client, hook_url, payload, **options)
    except PermissionDeniedError as exc:
        raise connection.permission_error("hooks::send", exc) from exc
