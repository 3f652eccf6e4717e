"""Webhooks: subscriptions, receiving, dedupe and ordering, dispatch, virtual webhooks (pollers) and forwarding.

This module is provider-agnostic; a connector supplies a :class:`WebhookBackend` (Kustomer:
:class:`connectors.kustomer.webhooks.KustomerWebhooks`) that knows the provider's webhook API, signatures,
envelopes and how to poll for what the provider does not push. ::

    hub = Connectors()
    conn = await hub.get("kustomer", "tenant-1")
    await conn.webhooks.subscribe(["genericContact::created", "genericCompany::*"], url="https://app/webhooks/kustomer")

    @hub.webhooks.on("genericContact::*")
    async def changed(event: Event) -> None: ...

    # the host app's POST /webhooks/kustomer:
    result = await hub.webhooks.handle(await request.body(), request.headers)
    # virtual webhooks (companies, CRM objects, deletions):
    await hub.webhooks.start_polling(interval=60)

How a unified event reaches its consumers
-----------------------------------------
*Native* events are pushed by the provider. One provider webhook per (provider org, receive URL) serves every
connection of that org, for every model (``subscribe`` creates it or adds events to it under a store lease,
so concurrent workers end with ONE webhook). A delivery is routed by the envelope's org, verified against
that org's webhook tokens (HMAC, constant time), normalised and mapped with each subscribed owner's mapper
(no re-fetch), then committed in one store transaction together with its dedupe key (the provider's event
id: at-least-once deliveries are absorbed) and each object's version (an update older than one already
delivered is dropped as *stale*; deletions are tombstones).

*Virtual* events (models and triggers the provider does not push) come from a poller per connection: the
backend searches for what changed since the stored watermark (and reconciles ids to see deletions); the
events and the new watermark are committed in one transaction with a compare-and-swap, so concurrent
pollers never emit twice and a restarted poller neither misses nor repeats events. A store lease keeps
one poller per connection busy at a time.

Committed events go to a durable *outbox*: ``local`` rows for the in-process handlers (``on``) and streams
(``stream``), and one row per matching *subscriber* (forwarding to the host app's subscribers, signed with
the subscriber's own secret: ``X-Connectors-Signature`` = hex HMAC-SHA256(secret, raw body)). The process
that commits events delivers them at once; rows whose delivery failed (a handler raised, a subscriber was
down) are retried with exponential backoff by :meth:`WebhookHub.deliver_pending` (run by the background
worker) until ``max_attempts``, then kept as ``dead``. Handlers may thus see an event more than once:
deduplicate on ``event.idempotency_key``.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import functools
import hashlib
import hmac
import inspect
import json
import logging
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, TypeVar, cast

import anyio.to_thread
import httpx

from connectors.errors import (
    ConfigurationError,
    ConnectorError,
    InsufficientPermissionsError,
    NotConnectedError,
    PermissionDeniedError,
    StoreConflictError,
    WebhookPayloadError,
    WebhookSignatureError,
)
from connectors.runtime.store import (
    CommitResult,
    EventCandidate,
    OutboxRecord,
    OutboxRow,
    RemoteWebhookRef,
    VersionCheck,
    WatermarkSwap,
    WebhookEndpointRecord,
    WebhookSubscriberRecord,
    WebhookSubscriptionRecord,
)
from unified_models import Event, UnifiedResource

if TYPE_CHECKING:
    from connectors.runtime.connection import Connection, Connectors
    from connectors.runtime.store import ConnectionStore

__all__ = [
    "TRIGGERS",
    "Change",
    "ConnectionWebhooks",
    "EventPlan",
    "EventStream",
    "HandleResult",
    "Handler",
    "InboundDelivery",
    "PollOutcome",
    "RemoteWebhook",
    "Subscriber",
    "Subscription",
    "WebhookBackend",
    "WebhookHub",
    "WebhookOptions",
    "check_pattern",
    "endpoint_id",
    "event_matches",
    "parse_event_name",
    "sign_payload",
]

logger = logging.getLogger(__name__)

TRIGGERS: Final[tuple[str, ...]] = ("created", "updated", "deleted")
"""The unified triggers."""

Handler = Callable[[Event], Awaitable[None] | None]
"""An in-process event handler: ``handler(event)``, sync or async."""
H = TypeVar("H", bound=Handler)
T = TypeVar("T")

_LOCAL: Final = "local"
_STAT_KEYS: Final = (
    "received",
    "accepted",
    "duplicates",
    "stale",
    "rejected_signature",
    "rejected_payload",
    "dispatched",
    "forwarded",
    "forward_failures",
    "handler_failures",
    "dead_letters",
    "polled",
    "poll_failures",
    "map_failures",
    "stream_dropped",
)


# --------------------------------------------------------------------------------------------------------
# Public value types


@dataclass(frozen=True, slots=True)
class Subscription:
    """One connection's subscription to one unified event.

    Attributes:
        event: ``<model>::<trigger>``.
        native: pushed by a provider webhook; ``False`` for a virtual (polled) event.
        kustomer_webhook_id: the provider webhook delivering it (native events), else ``None``.
        created_at: when first subscribed (UTC).
        connection_id: the subscribing connection.
        owner_id: its owner.
    """

    event: str
    native: bool
    kustomer_webhook_id: str | None
    created_at: datetime
    connection_id: str = ""
    owner_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (camelCase keys)."""
        return {
            "object": "webhookSubscription",
            "event": self.event,
            "native": self.native,
            "kustomerWebhookId": self.kustomer_webhook_id,
            "createdAt": self.created_at.isoformat(),
            "connectionId": self.connection_id,
            "ownerId": self.owner_id,
        }


@dataclass(frozen=True, slots=True)
class Subscriber:
    """A forwarding target: the host app's subscriber receiving an owner's events.

    Attributes:
        id: its id.
        owner_id: whose events it receives.
        url: where events are POSTed.
        events: event patterns (``genericContact::*``, ``*``).
        secret: the signing secret, only when just created (shown once; stored encrypted). Never in ``repr``.
        created_at: when added (UTC).
    """

    id: str
    owner_id: str
    url: str
    events: tuple[str, ...]
    secret: str | None = field(default=None, repr=False)
    created_at: datetime | None = None

    def __repr__(self) -> str:
        shown = "None" if self.secret is None else "'**********'"
        return (
            f"Subscriber(id={self.id!r}, owner_id={self.owner_id!r}, url={self.url!r}, events={self.events!r}, "
            f"secret={shown})"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (camelCase keys); ``secret`` only when present (at creation)."""
        out: dict[str, Any] = {
            "object": "webhookSubscriber",
            "id": self.id,
            "ownerId": self.owner_id,
            "url": self.url,
            "events": list(self.events),
            "createdAt": self.created_at.isoformat() if self.created_at else None,
        }
        if self.secret is not None:
            out["secret"] = self.secret
        return out


@dataclass(frozen=True, slots=True)
class HandleResult:
    """What happened to one delivery.

    Attributes:
        accepted: the delivery was authentic and well-formed (answer 2xx).
        duplicate: it was delivered before (nothing emitted).
        stale: every event it carried was older than one already delivered (nothing emitted).
        events: the unified events emitted (one per subscribed owner and change).
    """

    accepted: bool
    duplicate: bool
    stale: bool
    events: list[Event]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "accepted": self.accepted,
            "duplicate": self.duplicate,
            "stale": self.stale,
            "events": [e.model_dump(mode="json") for e in self.events],
        }


@dataclass(frozen=True, slots=True)
class EventPlan:
    """How a connector serves one unified event.

    Attributes:
        native: provider webhook events to subscribe to.
        polls: poll specs (virtual webhooks) to run.
    """

    native: tuple[str, ...] = ()
    polls: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RemoteWebhook:
    """A provider webhook as the provider reports it.

    Attributes:
        id: its id.
        name: its name.
        url: where it delivers.
        events: its provider events.
        token: its signing token, when the response included it (never in ``repr``).
    """

    id: str
    name: str
    url: str
    events: tuple[str, ...]
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class InboundDelivery:
    """A delivery as parsed before verification.

    Attributes:
        routing_key: the provider org it claims to come from.
        event_id: the provider's event id (the dedupe key).
        name: the provider event name.
        signature: the signature header value.
        envelope: the parsed body.
    """

    routing_key: str
    event_id: str
    name: str
    signature: str
    envelope: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Change:
    """One change of one unified object, from a delivery or a poll.

    Attributes:
        model: the unified model.
        trigger: ``created``, ``updated`` or ``deleted``.
        object_id: the unified id.
        resource: the provider object to map (``None``: no data, e.g. a deletion).
        occurred_at: when it happened at the provider.
        version: a sortable version of the object (``None``: not comparable); ``"~"`` for deletions.
        source_event: the provider event it came from (native) or the poll spec.
        key: what makes it unique (used in the idempotency key).
    """

    model: str
    trigger: str
    object_id: str
    resource: Any
    occurred_at: datetime
    version: str | None
    source_event: str
    key: str

    @property
    def event(self) -> str:
        """``<model>::<trigger>``."""
        return f"{self.model}::{self.trigger}"


@dataclass(frozen=True, slots=True)
class PollOutcome:
    """One poll round of one spec.

    Attributes:
        changes: what changed.
        state: the new backend state (the watermark).
        known_upsert: objects the poller now knows (id -> version), when it tracks them.
        known_remove: objects it no longer knows (deleted).
    """

    changes: list[Change]
    state: dict[str, Any]
    known_upsert: dict[str, str | None] = field(default_factory=dict)
    known_remove: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class WebhookOptions:
    """Tuning of a :class:`WebhookHub` (defaults suit production; tests compress them).

    Attributes:
        dedupe_retention: seconds a provider event id is remembered (Kustomer retries for about an hour).
        version_retention: seconds object versions are remembered for the stale-update check.
        max_body_bytes: largest delivery accepted.
        lease_ttl: seconds a webhook-endpoint or poller lease lasts.
        lock_wait: seconds to wait for another worker's endpoint lease.
        outbox_lease: seconds a claimed outbox row stays with its claimer.
        max_attempts: delivery attempts of a local row (handlers) before it is dead.
        forward_max_attempts: delivery attempts to a subscriber before the row is dead.
        backoff_base: first retry delay (doubles per attempt).
        backoff_max: largest retry delay.
        forward_timeout: timeout of one forwarded POST.
        stream_queue_size: events buffered per stream (the oldest is dropped beyond).
        cache_ttl: seconds tokens, subscribers and connections are cached in memory.
        idle_wait: seconds the background worker sleeps when nothing is due.
        webhook_name: name prefix of the provider webhooks we create.
    """

    dedupe_retention: float = 3 * 86400.0
    version_retention: float = 7 * 86400.0
    max_body_bytes: int = 5 * 1024 * 1024
    lease_ttl: float = 120.0
    lock_wait: float = 30.0
    outbox_lease: float = 60.0
    max_attempts: int = 8
    forward_max_attempts: int = 10
    backoff_base: float = 1.0
    backoff_max: float = 600.0
    forward_timeout: float = 10.0
    stream_queue_size: int = 1000
    cache_ttl: float = 5.0
    idle_wait: float = 1.0
    webhook_name: str = "unified-connectors"


class WebhookBackend(Protocol):
    """The provider side of webhooks, bound to one connection (``connector.webhook_backend()``)."""

    connector_id: str
    max_webhooks: int
    max_events_per_webhook: int

    def models(self) -> tuple[str, ...]:
        """Unified models that have events (``*`` expands to these)."""
        ...

    def event_plan(self, model: str, trigger: str, *, native: bool) -> EventPlan:
        """How ``model::trigger`` is served (``native=False``: everything polled, no receive URL)."""
        ...

    def operation_for(self, model: str) -> str:
        """The read operation a subscription to ``model`` needs (``genericContact::list``)."""
        ...

    async def org_key(self) -> str:
        """The provider org of the connection (the routing key of its deliveries)."""
        ...

    async def list_remote(self) -> list[RemoteWebhook]:
        """Every provider webhook of the org."""
        ...

    async def create_remote(self, *, name: str, url: str, events: Sequence[str]) -> RemoteWebhook:
        """Create a provider webhook (the result carries its token)."""
        ...

    async def update_remote(self, id: str, *, name: str, url: str, events: Sequence[str]) -> RemoteWebhook:
        """Change a provider webhook's events (the result's id may differ when it had to be recreated)."""
        ...

    async def delete_remote(self, id: str) -> None:
        """Delete a provider webhook (absent is fine)."""
        ...

    async def remote_token(self, id: str) -> str:
        """A provider webhook's signing token."""
        ...

    def parse_delivery(self, raw_body: bytes, headers: Mapping[str, str]) -> InboundDelivery:
        """Parse a delivery enough to route it (raises ``WebhookPayloadError``/``WebhookSignatureError``)."""
        ...

    def verify(self, raw_body: bytes, signature: str, token: str) -> bool:
        """Whether ``signature`` signs ``raw_body`` with ``token`` (constant time)."""
        ...

    def normalize(self, delivery: InboundDelivery) -> list[Change]:
        """The changes a verified delivery carries (raises ``WebhookPayloadError`` when malformed)."""
        ...

    def to_unified(self, model: str, resource: Any) -> UnifiedResource:
        """Map a provider object with this connection's mapper and settings."""
        ...

    def needs_known(self, spec: str, wanted: frozenset[str]) -> bool:
        """Whether polling ``spec`` for ``wanted`` events needs the known objects."""
        ...

    async def baseline(self, spec: str, *, wanted: frozenset[str], known: bool) -> PollOutcome:
        """The starting point of a poller: nothing before it is emitted."""
        ...

    async def poll(
        self,
        spec: str,
        *,
        state: Mapping[str, Any],
        known: Mapping[str, str | None] | None,
        wanted: frozenset[str],
        now: float,
    ) -> PollOutcome:
        """One round: what changed since ``state``."""
        ...


# --------------------------------------------------------------------------------------------------------
# Names and patterns


def parse_event_name(name: str) -> tuple[str, str]:
    """Split ``<model>::<trigger>``.

    Args:
        name: e.g. ``genericContact::created``.

    Returns:
        ``(model, trigger)``.

    Raises:
        ConfigurationError: not of that form, or an unknown trigger.
    """
    if not isinstance(name, str) or name.count("::") != 1:
        raise ConfigurationError(f"webhook event {name!r} must look like '<model>::<created|updated|deleted>'")
    model, trigger = name.split("::")
    if not model or trigger not in TRIGGERS:
        raise ConfigurationError(f"webhook event {name!r}: the trigger must be one of {', '.join(TRIGGERS)}")
    return model, trigger


def check_pattern(pattern: str) -> str:
    """Validate an event pattern: ``*``, ``<model>::<trigger>``, ``<model>::*`` or ``*::<trigger>``.

    Args:
        pattern: the pattern.

    Returns:
        The pattern.

    Raises:
        ConfigurationError: a malformed pattern (names it).
    """
    if pattern == "*":
        return pattern
    if not isinstance(pattern, str) or pattern.count("::") != 1:
        raise ConfigurationError(
            f"event pattern {pattern!r} must be '*', '<model>::<trigger>', '<model>::*' or '*::<trigger>'"
        )
    model, trigger = pattern.split("::")
    if not model or (trigger != "*" and trigger not in TRIGGERS):
        raise ConfigurationError(f"event pattern {pattern!r}: the trigger must be '*' or one of {', '.join(TRIGGERS)}")
    return pattern


def event_matches(pattern: str, name: str) -> bool:
    """Whether event ``name`` (``genericContact::updated``) matches ``pattern``.

    Args:
        pattern: a pattern accepted by :func:`check_pattern`.
        name: the event name.

    Returns:
        Whether it matches.
    """
    if pattern in ("*", name):
        return True
    p_model, _, p_trigger = pattern.partition("::")
    model, _, trigger = name.partition("::")
    return (p_model in ("*", model)) and (p_trigger in ("*", trigger))


def sign_payload(secret: str, body: bytes) -> str:
    """``X-Connectors-Signature`` of a forwarded delivery: lowercase hex HMAC-SHA256 of the raw body.

    Args:
        secret: the subscriber's secret.
        body: the exact bytes sent.

    Returns:
        The signature.
    """
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def endpoint_id(connector_id: str, org_key: str, url: str) -> str:
    """The id of the endpoint serving one receive URL for one provider org.

    Args:
        connector_id: the connector.
        org_key: the provider org.
        url: the receive URL.

    Returns:
        32 hex characters.
    """
    return hashlib.sha256(json.dumps([connector_id, org_key, url]).encode()).hexdigest()[:32]


def _endpoint_secret_scope(endpoint: str) -> str:
    return f"webhook-endpoint:{endpoint}"


def _check_url(url: str, what: str) -> str:
    if not isinstance(url, str):
        raise ConfigurationError(f"{what} must be a string")
    parsed = httpx.URL(url) if url.startswith(("http://", "https://")) else None
    if parsed is None or not parsed.host or len(url) > 2000:
        raise ConfigurationError(f"{what} must be an absolute http(s) URL, got {url!r}")
    return url


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


# --------------------------------------------------------------------------------------------------------
# Streams


class EventStream:
    """An in-process fan-out of events (for Server-Sent Events): iterate it with ``async for``.

    Each stream has its own bounded queue; when a consumer falls behind, the oldest events are dropped and
    counted in :attr:`dropped`. Close it (or leave ``async with``) to unsubscribe.
    """

    def __init__(self, hub: WebhookHub, owner_id: str | None, patterns: Sequence[str], size: int) -> None:
        self._hub = hub
        self.owner_id = owner_id
        self.patterns = tuple(check_pattern(p) for p in patterns)
        self._queue: deque[Event] = deque()
        self._size = max(1, size)
        self._ready = asyncio.Event()
        self._closed = False
        self.dropped = 0

    def __repr__(self) -> str:
        return f"EventStream(owner_id={self.owner_id!r}, patterns={self.patterns!r}, queued={len(self._queue)})"

    def wants(self, event: Event) -> bool:
        """Whether this stream takes ``event``."""
        if self.owner_id is not None and event.owner_id != self.owner_id:
            return False
        return any(event_matches(p, event.name) for p in self.patterns)

    def put(self, event: Event) -> None:
        """Queue an event (dropping the oldest when full)."""
        if self._closed:
            return
        if len(self._queue) >= self._size:
            self._queue.popleft()
            self.dropped += 1
            self._hub._count("stream_dropped")
        self._queue.append(event)
        self._ready.set()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        while not self._queue:
            if self._closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._queue.popleft()

    async def get(self, wait: float | None = None) -> Event:
        """The next event, waiting at most ``wait`` seconds.

        Raises:
            TimeoutError: nothing arrived in time.
            StopAsyncIteration: the stream is closed.
        """
        async with asyncio.timeout(wait):
            return await self.__anext__()

    async def aclose(self) -> None:
        """Stop receiving events (pending ones can still be read)."""
        self._closed = True
        self._ready.set()
        self._hub._streams.discard(self)

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


# --------------------------------------------------------------------------------------------------------
# The hub


@dataclass
class _Cached:
    expires: float
    value: Any


class WebhookHub:
    """Receiving and dispatching webhook events for every connection of a :class:`Connectors` hub.

    Get it as ``hub.webhooks``. See the module docstring for the flow.

    Args:
        hub: the connections hub.
        options: tuning (:class:`WebhookOptions`).
        clock: time source in epoch seconds (default: the hub's).
        forward_transport: httpx transport for forwarded deliveries (tests); default real HTTP.
    """

    def __init__(
        self,
        hub: Connectors,
        *,
        options: WebhookOptions | None = None,
        clock: Callable[[], float] | None = None,
        forward_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.hub = hub
        self.options = options or WebhookOptions()
        self.clock: Callable[[], float] = clock if clock is not None else hub.clock
        self.forward_transport = forward_transport
        self._handlers: list[tuple[str, Handler]] = []
        self._streams: set[EventStream] = set()
        self._stats: dict[str, int] = dict.fromkeys(_STAT_KEYS, 0)
        self._cache: dict[tuple[str, ...], _Cached] = {}
        self._holder = f"{uuid.uuid4().hex}"
        self._forward_http: httpx.AsyncClient | None = None
        self._worker: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._poller: asyncio.Task[None] | None = None
        self._poll_stop: asyncio.Event | None = None
        self._poll_interval = 60.0
        self._deliver_lock = asyncio.Lock()
        self._finished: list[str] = []
        self._token_reloads: dict[tuple[str, str], float] = {}
        self._inflight = 0
        self._inflight_lock = threading.Lock()
        self._idle_waiter: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"WebhookHub(handlers={len(self._handlers)}, streams={len(self._streams)})"

    @property
    def store(self) -> ConnectionStore:
        """The hub's store."""
        return self.hub.store

    def configure(self, **changes: Any) -> WebhookOptions:
        """Change options (e.g. ``configure(backoff_base=0.01)`` in tests).

        Returns:
            The new options.

        Raises:
            TypeError: an unknown option.
        """
        self.options = replace(self.options, **changes)
        return self.options

    # -- stats ------------------------------------------------------------------------------------------

    def _count(self, key: str, n: int = 1) -> None:
        self._stats[key] = self._stats.get(key, 0) + n

    async def _call(self, func: Callable[[], T]) -> T:
        """Run a (synchronous) store call in a worker thread, counted until the THREAD is done.

        A cancelled caller does not stop its thread; :meth:`aclose` waits for every such thread, so the store
        is never closed under a running statement. A call cancelled before its thread started never runs.
        """
        state = {"started": False, "abandoned": False}
        with self._inflight_lock:
            self._inflight += 1

        def counted() -> T:
            with self._inflight_lock:
                if state["abandoned"]:
                    raise asyncio.CancelledError
                state["started"] = True
            try:
                return func()
            finally:
                self._release_call()

        try:
            return await anyio.to_thread.run_sync(counted)
        except BaseException:
            with self._inflight_lock:
                release = not state["started"]
                state["abandoned"] = True
            if release:
                self._release_call()
            raise

    def _release_call(self) -> None:
        with self._inflight_lock:
            self._inflight -= 1
            waiter = self._idle_waiter if self._inflight == 0 else None
        if waiter is not None:
            loop, idle = waiter
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
                loop.call_soon_threadsafe(idle.set)

    @property
    def stats(self) -> dict[str, int]:
        """Counters of this process.

        ``received``, ``accepted``, ``duplicates``, ``stale``, ``rejected_signature``, ``rejected_payload``,
        ``dispatched``, ``forwarded``, ``forward_failures``, plus ``handler_failures``, ``dead_letters``,
        ``polled``, ``poll_failures``, ``map_failures`` and ``stream_dropped``.
        """
        return dict(self._stats)

    # -- consumers --------------------------------------------------------------------------------------

    def on(self, pattern: str) -> Callable[[H], H]:
        """Register an in-process handler for events matching ``pattern`` (usable as a decorator).

        Args:
            pattern: ``genericContact::updated``, ``genericContact::*``, ``*::deleted`` or ``*``.

        Returns:
            A decorator registering ``handler(event)`` (sync or async) and returning it unchanged.

        Raises:
            ConfigurationError: a malformed pattern.
        """
        check_pattern(pattern)

        def register(handler: H) -> H:
            if not callable(handler):
                raise ConfigurationError("a webhook handler must be callable")
            self._handlers.append((pattern, handler))
            return handler

        return register

    def off(self, handler: Handler) -> bool:
        """Unregister a handler (every pattern it was registered for).

        Returns:
            Whether it was registered.
        """
        before = len(self._handlers)
        self._handlers = [(p, h) for p, h in self._handlers if h is not handler]
        return len(self._handlers) != before

    def stream(
        self, *, owner_id: str | None = None, patterns: Sequence[str] = ("*",), max_queue: int | None = None
    ) -> EventStream:
        """Receive events in-process (for Server-Sent Events); registered as soon as this returns.

        Args:
            owner_id: only this owner's events (``None``: every owner's).
            patterns: event patterns.
            max_queue: events buffered before the oldest is dropped (default ``stream_queue_size``).

        Returns:
            An :class:`EventStream` (an async iterator of :class:`~unified_models.Event`).

        Raises:
            ConfigurationError: a malformed pattern.
        """
        stream = EventStream(self, owner_id, patterns, max_queue or self.options.stream_queue_size)
        self._streams.add(stream)
        return stream

    # -- subscribers (forwarding) -----------------------------------------------------------------------

    async def add_subscriber(self, *, owner_id: str, url: str, events: Sequence[str]) -> Subscriber:
        """Forward an owner's events to ``url``, signed with a new secret (returned once, stored encrypted).

        Deliveries are ``POST`` JSON :class:`~unified_models.Event` with ``X-Connectors-Event`` (the event
        name), ``X-Connectors-Delivery`` (its idempotency key) and ``X-Connectors-Signature`` (hex
        HMAC-SHA256 of the raw body with the secret); non-2xx answers are retried with backoff.

        Args:
            owner_id: whose events.
            url: the subscriber's URL.
            events: event patterns (``*`` for all).

        Returns:
            The subscriber, with its ``secret``.

        Raises:
            ConfigurationError: bad owner, URL or pattern.
        """
        if not owner_id or not isinstance(owner_id, str):
            raise ConfigurationError("owner_id must be a non-empty string")
        _check_url(url, "subscriber url")
        if isinstance(events, str) or not events:
            raise ConfigurationError("events must be a non-empty list of event patterns")
        patterns = tuple(check_pattern(p) for p in events)
        secret = secrets.token_hex(32)
        record = await self._call(
            lambda: self.store.add_webhook_subscriber(owner_id=owner_id, url=url, events=patterns, secret=secret)
        )
        self._invalidate("subscribers", owner_id)
        return _subscriber(record, secret=secret)

    async def list_subscribers(self, *, owner_id: str) -> list[Subscriber]:
        """An owner's subscribers (without secrets)."""
        records = await self._call(lambda: self.store.list_webhook_subscribers(owner_id=owner_id))
        return [_subscriber(r) for r in records]

    async def remove_subscriber(self, *, owner_id: str, id: str) -> bool:
        """Remove one of an owner's subscribers, its secret and its pending deliveries.

        Returns:
            Whether the owner had it.
        """
        removed: bool = await self._call(lambda: self.store.delete_webhook_subscriber(owner_id=owner_id, id=id))
        self._invalidate("subscribers", owner_id)
        self._invalidate("subscriber", id)
        return removed

    # -- caches -----------------------------------------------------------------------------------------

    def _cached(self, key: tuple[str, ...]) -> Any:
        hit = self._cache.get(key)
        if hit is not None and hit.expires > time.monotonic():
            return hit.value
        return None

    def _remember(self, key: tuple[str, ...], value: Any, ttl: float | None = None) -> Any:
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = _Cached(time.monotonic() + (self.options.cache_ttl if ttl is None else ttl), value)
        return value

    def _invalidate(self, *key: str) -> None:
        self._cache.pop(tuple(key), None)

    async def _connection(self, connection_id: str) -> Connection | None:
        key = ("connection", connection_id)
        cached = self._cached(key)
        if cached is not None:
            return cast("Connection", cached)
        try:
            connection = await self.hub.get_by_id(connection_id)
        except NotConnectedError:
            return None
        return cast("Connection", self._remember(key, connection, max(self.options.cache_ttl, 30.0)))

    async def _tokens(self, connector_id: str, org_key: str, *, fresh: bool = False) -> list[str]:
        key = ("tokens", connector_id, org_key)
        if not fresh:
            cached = self._cached(key)
            if cached is not None:
                return cast("list[str]", cached)

        def load() -> list[str]:
            tokens: list[str] = []
            for ep in self.store.list_webhook_endpoints(connector_id=connector_id, org_key=org_key):
                for remote in ep.remotes:
                    token = self.store.get_secret(_endpoint_secret_scope(ep.id), remote.id)
                    if token:
                        tokens.append(token)
            return tokens

        tokens = await self._call(load)
        return cast("list[str]", self._remember(key, tokens, max(self.options.cache_ttl, 30.0)))

    async def _parser(self, connector_id: str | None) -> WebhookBackend:
        """A backend able to parse deliveries of ``connector_id`` (parsing does not depend on the connection)."""
        if connector_id is None:
            cached_id = self._cached(("connector",))
            if cached_id is None:
                endpoints = await self._call(lambda: self.store.list_webhook_endpoints())
                ids = sorted({ep.connector_id for ep in endpoints})
                if not ids:
                    raise WebhookSignatureError(
                        "no provider webhook is registered here: nothing can verify this delivery",
                        reason="unknown_sender",
                    )
                if len(ids) > 1:
                    raise ConfigurationError(f"several connectors have webhooks ({', '.join(ids)}): pass connector_id")
                cached_id = self._remember(("connector",), ids[0])
            connector_id = str(cached_id)
        key = ("parser", connector_id)
        cached = self._cached(key)
        if cached is not None:
            return cast("WebhookBackend", cached)
        subs = await self._call(lambda: self.store.list_webhook_subscriptions(connector_id=connector_id, native=True))
        for connection_id in dict.fromkeys(s.connection_id for s in subs):
            connection = await self._connection(connection_id)
            if connection is not None:
                return cast("WebhookBackend", self._remember(key, connection.webhooks.backend, 300.0))
        raise WebhookSignatureError(
            f"no {connector_id} webhook subscription exists: nothing can verify this delivery", reason="unknown_sender"
        )

    # -- receiving --------------------------------------------------------------------------------------

    async def handle(
        self, raw_body: bytes, headers: Mapping[str, str], *, connector_id: str | None = None
    ) -> HandleResult:
        """Verify, dedupe, map and dispatch one provider delivery.

        Answer the provider 2xx when this returns (even for a duplicate or a stale update), 401 on
        :class:`~connectors.errors.WebhookSignatureError` and 400 on
        :class:`~connectors.errors.WebhookPayloadError`.

        Args:
            raw_body: the exact request body (the signature covers these bytes).
            headers: the request headers (any case).
            connector_id: the connector the delivery is for (default: the one connector with webhooks).

        Returns:
            What happened; ``events`` are the unified events emitted.

        Raises:
            WebhookSignatureError: missing or wrong signature, or no webhook registered for the sender's org
                (``reason``); never dispatched.
            WebhookPayloadError: malformed body or headers (``reason``).
        """
        self._count("received")
        try:
            parser, delivery, changes = await self._receive(raw_body, headers, connector_id)
        except WebhookSignatureError as exc:
            self._count("rejected_signature")
            logger.warning("webhook delivery rejected: %s", exc.reason)
            raise
        except WebhookPayloadError as exc:
            self._count("rejected_payload")
            logger.warning("webhook delivery rejected: %s", exc.reason)
            raise
        return await self._accept(parser.connector_id, delivery, changes)

    async def _receive(
        self, raw_body: bytes, headers: Mapping[str, str], connector_id: str | None
    ) -> tuple[WebhookBackend, InboundDelivery, list[Change]]:
        if not isinstance(raw_body, bytes | bytearray):
            raise WebhookPayloadError("the delivery body must be bytes", reason="not_bytes")
        body = bytes(raw_body)
        if len(body) > self.options.max_body_bytes:
            raise WebhookPayloadError(
                f"the delivery body is {len(body)} bytes, above {self.options.max_body_bytes}", reason="too_large"
            )
        lowered = {str(k).lower(): str(v) for k, v in headers.items()}
        parser = await self._parser(connector_id)
        delivery = parser.parse_delivery(body, lowered)
        tokens = await self._tokens(parser.connector_id, delivery.routing_key)
        if not any(parser.verify(body, delivery.signature, t) for t in tokens):
            # A token may have been added or rotated by another worker since it was cached: re-read them, at
            # most once a second per org (forged deliveries must not turn into a flood of store reads).
            key = (parser.connector_id, delivery.routing_key)
            last = self._token_reloads.get(key)
            if last is None or time.monotonic() - last >= 1.0:
                if len(self._token_reloads) > 10_000:
                    self._token_reloads.clear()
                self._token_reloads[key] = time.monotonic()
                tokens = await self._tokens(parser.connector_id, delivery.routing_key, fresh=True)
            if not tokens:
                raise WebhookSignatureError(
                    f"no {parser.connector_id} webhook is registered for org {delivery.routing_key!r}",
                    reason="unknown_sender",
                )
            if not any(parser.verify(body, delivery.signature, t) for t in tokens):
                raise WebhookSignatureError(
                    "the delivery signature does not match any webhook token of its org", reason="bad_signature"
                )
        return parser, delivery, parser.normalize(delivery)

    async def _accept(self, connector_id: str, delivery: InboundDelivery, changes: list[Change]) -> HandleResult:
        names = sorted({c.event for c in changes})
        now = self.clock()
        connections: dict[str, Connection | None] = {}
        while True:  # one worker-thread hop per delivery (two when a subscribed connection is not cached yet)
            outcome = await self._call(
                functools.partial(self._accept_sync, connector_id, delivery, changes, names, now, connections)
            )
            if isinstance(outcome, _NeedConnections):
                for connection_id in outcome.ids:
                    connections[connection_id] = await self._connection(connection_id)
                continue
            prepared, result = outcome
            break
        if result.duplicate:
            self._count("duplicates")
            return HandleResult(accepted=True, duplicate=True, stale=False, events=[])
        self._count("accepted")
        events, stale = await self._after_commit(prepared, result.accepted)
        return HandleResult(
            accepted=True, duplicate=False, stale=bool(prepared) and stale == len(prepared), events=events
        )

    def _accept_sync(
        self,
        connector_id: str,
        delivery: InboundDelivery,
        changes: list[Change],
        names: list[str],
        now: float,
        connections: dict[str, Connection | None],
    ) -> tuple[list[_Prepared], CommitResult] | _NeedConnections:
        """Subscriptions, mapping and the commit, in a worker thread (the store is synchronous)."""
        org = delivery.routing_key
        subs = (
            self.store.list_webhook_subscriptions(connector_id=connector_id, org_key=org, events=names, native=True)
            if names
            else []
        )
        missing = []
        for sub in subs:
            if sub.connection_id not in connections:
                cached = self._cached(("connection", sub.connection_id))
                if cached is None:
                    missing.append(sub.connection_id)
                else:
                    connections[sub.connection_id] = cast("Connection", cached)
        if missing:
            return _NeedConnections(tuple(dict.fromkeys(missing)))
        prepared: list[_Prepared] = []
        for change in changes:
            seen_owners: set[str] = set()
            for sub in subs:
                if sub.event != change.event or sub.owner_id in seen_owners:
                    continue
                connection = connections.get(sub.connection_id)
                if connection is None:
                    continue
                backend = connection.webhooks.backend
                model, trigger = parse_event_name(sub.event)
                if change.source_event not in backend.event_plan(model, trigger, native=True).native:
                    continue
                seen_owners.add(sub.owner_id)
                key = f"{connector_id}:{delivery.event_id}:{change.key}"
                event = self._event(backend, change, owner_id=sub.owner_id, key=key)
                prepared.append(self._candidate_sync(connector_id, event, change, now))
        finished = self._take_finished()
        try:
            result = self.store.commit_events(
                [p.candidate for p in prepared],
                now=now,
                dedupe=(f"{connector_id}:{org}", delivery.event_id),
                dedupe_retention=self.options.dedupe_retention,
                version_retention=self.options.version_retention,
                lease_seconds=self.options.outbox_lease,
                finish=finished,
            )
        except BaseException:
            self._finished.extend(finished)
            raise
        return prepared, result

    def _event(
        self, backend: WebhookBackend, change: Change, *, owner_id: str, key: str, source: str = "webhook"
    ) -> Event:
        data: UnifiedResource | None = None
        if change.resource is not None and change.trigger != "deleted":
            try:
                data = backend.to_unified(change.model, change.resource)
            except ConnectorError as exc:
                self._count("map_failures")
                logger.warning("could not map %s %s for owner %s: %s", change.model, change.object_id, owner_id, exc)
        return Event(
            model=change.model,
            trigger=cast("Literal['created', 'updated', 'deleted']", change.trigger),
            id=change.object_id,
            data=data,
            idempotency_key=key,
            occurred_at=change.occurred_at,
            connector_id=backend.connector_id,
            owner_id=owner_id,
            source=cast("Literal['webhook', 'poll']", source),
        )

    def _candidate_sync(self, connector_id: str, event: Event, change: Change, now: float) -> _Prepared:
        payload = event.model_dump(mode="json")
        targets: list[str] = [_LOCAL] if (self._handlers or self._streams) else []
        for sub in self._subscribers_sync(event.owner_id or ""):
            if any(event_matches(p, event.name) for p in sub.events):
                targets.append(sub.id)
        rows = tuple(
            OutboxRow(id=uuid.uuid4().hex, target=t, owner_id=event.owner_id, payload=payload, available_at=now)
            for t in targets
        )
        version = None
        if change.version is not None:
            version = VersionCheck(
                scope=f"{connector_id}:{event.owner_id}",
                key=f"{change.model}:{change.object_id}",
                version=change.version,
                drop_if_older=change.trigger == "updated",
            )
        return _Prepared(EventCandidate(rows=rows, version=version), event)

    def _subscribers_sync(self, owner_id: str) -> list[WebhookSubscriberRecord]:
        key = ("subscribers", owner_id)
        cached = self._cached(key)
        if cached is not None:
            return cast("list[WebhookSubscriberRecord]", cached)
        return cast(
            "list[WebhookSubscriberRecord]", self._remember(key, self.store.list_webhook_subscribers(owner_id=owner_id))
        )

    def _take_finished(self) -> list[str]:
        taken, self._finished = self._finished, []
        return taken

    async def _flush_finished(self) -> None:
        finished = self._take_finished()
        if finished:
            try:
                await self._call(lambda: self.store.finish_outbox(finished))
            except BaseException:
                self._finished.extend(finished)
                raise

    async def _after_commit(self, prepared: Sequence[_Prepared], accepted: Sequence[bool]) -> tuple[list[Event], int]:
        events: list[Event] = []
        local: list[tuple[str, int, Event]] = []
        forward = False
        stale = 0
        for item, fresh in zip(prepared, accepted, strict=True):
            if not fresh:
                stale += 1
                continue
            events.append(item.event)
            for row in item.candidate.rows:
                if row.target == _LOCAL:
                    local.append((row.id, 0, item.event))
                else:
                    forward = True
        if stale:
            self._count("stale", stale)
        if local:
            await self._deliver_local(local)
        if forward:
            self._wake_worker()
        return events, stale

    # -- local delivery ---------------------------------------------------------------------------------

    async def _deliver_local(self, items: Sequence[tuple[str, int, Event]]) -> None:
        done: list[str] = []
        for row_id, attempts, event in items:
            if attempts == 0:
                for stream in list(self._streams):
                    if stream.wants(event):
                        stream.put(event)
            error = await self._run_handlers(event)
            if error is None:
                done.append(row_id)
                self._count("dispatched")
                continue
            self._count("handler_failures")
            dead = attempts + 1 >= self.options.max_attempts
            when = self.clock() + self._backoff(attempts)
            await self._call(
                functools.partial(self.store.retry_outbox, row_id, available_at=when, error=error, dead=dead)
            )
            if dead:
                self._count("dead_letters")
            self._wake_worker()
        if done:
            # Deleted with the next commit or delivery round (one transaction fewer per event); after a crash
            # in between, the rows come due again when their lease ends: at-least-once.
            self._finished.extend(done)
            self._wake_worker()

    async def _run_handlers(self, event: Event) -> str | None:
        error: str | None = None
        for pattern, handler in list(self._handlers):
            if not event_matches(pattern, event.name):
                continue
            try:
                result = handler(event)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                name = getattr(handler, "__qualname__", repr(handler))
                logger.exception("webhook handler %s failed on %s %s", name, event.name, event.idempotency_key)
                error = f"handler {name} raised {type(exc).__name__}"
        return error

    def _backoff(self, attempts: int) -> float:
        return float(min(self.options.backoff_max, self.options.backoff_base * (2**attempts)))

    # -- background delivery ----------------------------------------------------------------------------

    def _wake_worker(self) -> None:
        if self._closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._wake is None:
            self._wake = asyncio.Event()
        self._wake.set()
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._work(), name="connectors-webhook-delivery")

    async def _work(self) -> None:
        while not self._closed:
            try:
                delivered = await self.deliver_pending()
            except Exception:
                logger.exception("webhook delivery round failed")
                delivered = 0
            if delivered:
                continue
            assert self._wake is not None
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.options.idle_wait):
                    await self._wake.wait()

    async def deliver_pending(self, *, limit: int = 100) -> int:
        """Deliver the outbox rows that are due (retries, and rows of crashed workers), once.

        The background worker calls this; tests and cron jobs may too.

        Args:
            limit: at most this many rows.

        Returns:
            How many rows were attempted.
        """
        async with self._deliver_lock:
            return await self._deliver_round(limit)

    async def drain(self, *, max_seconds: float = 30.0) -> None:
        """Deliver every outbox row that is due now, waiting for a delivery round already running.

        Rows waiting for a later retry are left alone.

        Args:
            max_seconds: seconds before giving up.

        Raises:
            TimeoutError: rows kept becoming due for longer than ``max_seconds``.
        """
        async with asyncio.timeout(max_seconds):
            while await self.deliver_pending():
                pass

    async def _deliver_round(self, limit: int) -> int:
        await self._flush_finished()
        now = self.clock()
        has_local = bool(self._handlers or self._streams)
        rows = await self._call(
            lambda: self.store.claim_outbox(
                now=now, lease_seconds=self.options.outbox_lease, limit=limit, local=None if has_local else False
            )
        )
        if not rows:
            return 0
        local = [r for r in rows if r.target == _LOCAL]
        if local:
            await self._deliver_local([(r.id, r.attempts, Event.model_validate(r.payload)) for r in local])
        forward = [r for r in rows if r.target != _LOCAL]
        if forward:
            await asyncio.gather(*(self._forward(r) for r in forward))
        return len(rows)

    async def _forward(self, row: OutboxRecord) -> None:
        subscriber = await self._subscriber(row.target)
        if subscriber is None:
            await self._call(lambda: self.store.finish_outbox([row.id]))
            return
        record, secret = subscriber
        body = json.dumps(row.payload, separators=(",", ":"), ensure_ascii=False).encode()
        event_name = f"{row.payload.get('model')}::{row.payload.get('trigger')}"
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "unified-connectors-webhooks",
            "X-Connectors-Event": event_name,
            "X-Connectors-Delivery": str(row.payload.get("idempotencyKey", row.id)),
            "X-Connectors-Signature": sign_payload(secret, body),
        }
        error: str | None = None
        try:
            response = await self._http().post(record.url, content=body, headers=headers)
            if 200 <= response.status_code < 300:
                await self._call(lambda: self.store.finish_outbox([row.id]))
                self._count("forwarded")
                return
            error = f"subscriber answered {response.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__} posting to the subscriber"
        self._count("forward_failures")
        dead = row.attempts + 1 >= self.options.forward_max_attempts
        when = self.clock() + self._backoff(row.attempts)
        await self._call(lambda: self.store.retry_outbox(row.id, available_at=when, error=error or "failed", dead=dead))
        if dead:
            self._count("dead_letters")
            logger.warning("gave up forwarding %s to subscriber %s: %s", event_name, record.id, error)

    async def _subscriber(self, id: str) -> tuple[WebhookSubscriberRecord, str] | None:
        key = ("subscriber", id)
        cached = self._cached(key)
        if cached is not None:
            return cast("tuple[WebhookSubscriberRecord, str]", cached)

        def load() -> tuple[WebhookSubscriberRecord, str] | None:
            record = self.store.get_webhook_subscriber(id)
            secret = self.store.get_webhook_subscriber_secret(id) if record else None
            return None if record is None or secret is None else (record, secret)

        found = await self._call(load)
        if found is None:
            return None
        return cast("tuple[WebhookSubscriberRecord, str]", self._remember(key, found, 60.0))

    def _http(self) -> httpx.AsyncClient:
        if self._forward_http is None:
            self._forward_http = httpx.AsyncClient(
                transport=self.forward_transport, timeout=self.options.forward_timeout, follow_redirects=False
            )
        return self._forward_http

    # -- leases -----------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _lease(self, name: str, *, wait: bool = True) -> AsyncIterator[bool]:
        holder = f"{self._holder}:{id(asyncio.current_task())}"
        ttl = self.options.lease_ttl
        deadline = time.monotonic() + self.options.lock_wait
        delay = 0.01
        while True:
            if await self._call(functools.partial(self.store.acquire_lease, name, holder, ttl=ttl, now=self.clock())):
                break
            if not wait:
                yield False
                return
            if time.monotonic() > deadline:
                raise StoreConflictError(f"timed out after {self.options.lock_wait:g}s waiting for lease {name!r}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)
        try:
            yield True
        finally:
            await self._call(lambda: self.store.release_lease(name, holder))

    # -- subscriptions ----------------------------------------------------------------------------------

    async def _subscribe(self, cw: ConnectionWebhooks, events: Sequence[str], url: str | None) -> list[Subscription]:
        connection = cw.connection
        backend = cw.backend
        wanted = _expand(backend, events)
        if url is not None:
            _check_url(url, "url")
        plans = {name: backend.event_plan(*parse_event_name(name), native=url is not None) for name in wanted}
        for name in wanted:
            connection.require(backend.operation_for(parse_event_name(name)[0]))
        native_needed = {e for plan in plans.values() for e in plan.native}
        if native_needed:
            connection.require("webhooks::subscribe")
        org = await backend.org_key()
        info = connection.info
        now = datetime.now(UTC)
        existing = {
            s.event: s for s in await self._call(lambda: self.store.list_webhook_subscriptions(connection_id=info.id))
        }
        moved = {s.endpoint_id for n, s in existing.items() if n in wanted and s.endpoint_id}
        # Start the pollers first (reads only): a failure here leaves nothing half-subscribed.
        future = {n: backend.event_plan(*parse_event_name(n), native=s.native) for n, s in existing.items()} | plans
        baselines = [await self._prepare_baseline(cw, spec, w) for spec, w in _specs(future).items()]
        endpoint: WebhookEndpointRecord | None = None
        records: list[WebhookSubscriptionRecord] = []

        def rows(ep_id: str | None) -> list[WebhookSubscriptionRecord]:
            return [
                WebhookSubscriptionRecord(
                    connection_id=info.id,
                    event=name,
                    connector_id=info.connector_id,
                    owner_id=info.owner_id,
                    org_key=org,
                    native=bool(plans[name].native),
                    endpoint_id=ep_id if plans[name].native else None,
                    created_at=now,
                )
                for name in wanted
            ]

        if native_needed:
            assert url is not None
            ep_id = endpoint_id(info.connector_id, org, url)
            moved.discard(ep_id)
            async with self._lease(f"webhook-endpoint:{ep_id}"):
                current = await self._call(lambda: self.store.get_webhook_endpoint(ep_id))
                desired = set(native_needed) | (set(current.events) if current else set())
                endpoint = await self._reconcile_endpoint(
                    connection, backend, ep_id, org, url, current, desired, must_check=True
                )
                new_rows = rows(ep_id)
                records = await self._call(lambda: self.store.put_webhook_subscriptions(new_rows))
        else:
            new_rows = rows(None)
            records = await self._call(lambda: self.store.put_webhook_subscriptions(new_rows))
        for old in moved:
            if old:
                await self._shrink_endpoint(old, connection)
        for baseline in baselines:
            if baseline is not None:
                await self._commit_baseline(baseline)
        self._invalidate("tokens", info.connector_id, org)
        return [_subscription(r, endpoint, backend) for r in records]

    async def _reconcile_endpoint(
        self,
        connection: Connection,
        backend: WebhookBackend,
        ep_id: str,
        org: str,
        url: str,
        current: WebhookEndpointRecord | None,
        desired: set[str],
        *,
        must_check: bool,
    ) -> WebhookEndpointRecord | None:
        """Make the provider webhooks of an endpoint subscribe exactly ``desired`` (empty: delete them)."""
        if current is not None and set(current.events) == desired and not must_check:
            return current
        connector_id = backend.connector_id
        scope = _endpoint_secret_scope(ep_id)
        name_prefix = f"{self.options.webhook_name} {ep_id[:12]}"
        try:
            remote = {r.id: r for r in await backend.list_remote()}
            old_refs = list(current.remotes) if current else []
            chunks = _chunks(sorted(desired), backend.max_events_per_webhook)
            new_refs: list[RemoteWebhookRef] = []
            used: set[str] = set()
            for index, chunk in enumerate(chunks):
                name = f"{name_prefix} #{index + 1}"
                candidate: RemoteWebhook | None = None
                if index < len(old_refs) and old_refs[index].id in remote:
                    candidate = remote[old_refs[index].id]
                else:  # adopt a webhook we created before but never recorded (a crash, a lost store)
                    candidate = next(
                        (r for r in remote.values() if r.name == name and r.url == url and r.id not in used), None
                    )
                if candidate is None:
                    if len(remote) >= backend.max_webhooks:
                        from connectors.errors import WebhookLimitError

                        raise WebhookLimitError(
                            f"the {connector_id} org already has {len(remote)} outbound webhooks, the most it allows "
                            f"({backend.max_webhooks}); delete one, or subscribe with a receive URL already in use",
                            limit=backend.max_webhooks,
                        )
                    created = await backend.create_remote(name=name, url=url, events=chunk)
                    remote[created.id] = created
                    token = created.token or await backend.remote_token(created.id)
                    final = created
                else:
                    final = candidate
                    if set(candidate.events) != set(chunk) or candidate.url != url:
                        final = await backend.update_remote(candidate.id, name=name, url=url, events=chunk)
                        if final.id != candidate.id:
                            remote.pop(candidate.id, None)
                            remote[final.id] = final
                    token = final.token or await backend.remote_token(final.id)
                used.add(final.id)
                await self._call(functools.partial(self.store.put_secret, scope, final.id, token))
                new_refs.append(RemoteWebhookRef(id=final.id, events=tuple(chunk)))
            for ref in old_refs:
                if ref.id not in used:
                    await backend.delete_remote(ref.id)
                    await self._call(functools.partial(self.store.delete_secret, scope, ref.id))
        except PermissionDeniedError as exc:
            raise InsufficientPermissionsError(
                operation="webhooks::subscribe",
                missing_roles=_outbound_roles(),
                granted_roles=connection.info.granted_roles,
                detail=exc.detail,
            ) from exc
        self._invalidate("tokens", connector_id, org)
        if not new_refs:
            await self._call(lambda: self.store.delete_webhook_endpoint(ep_id))
            return None
        version = current.version if current else None
        return cast(
            "WebhookEndpointRecord",
            await self._call(
                lambda: self.store.save_webhook_endpoint(
                    id=ep_id,
                    connector_id=connector_id,
                    org_key=org,
                    url=url,
                    remotes=new_refs,
                    expected_version=version,
                )
            ),
        )

    async def _shrink_endpoint(self, ep_id: str, via: Connection | None = None) -> None:
        """Recompute an endpoint's events from the subscriptions it still serves (delete it when none).

        The provider calls use ``via`` (the connection whose change caused this) when it belongs to the
        endpoint's org, else the credential of a connection still subscribed there.
        """
        async with self._lease(f"webhook-endpoint:{ep_id}"):
            current = await self._call(lambda: self.store.get_webhook_endpoint(ep_id))
            if current is None:
                return
            subs = await self._call(lambda: self.store.list_webhook_subscriptions(endpoint_id=ep_id, native=True))
            desired: set[str] = set()
            manager: Connection | None = None
            for sub in subs:
                connection = await self._connection(sub.connection_id)
                if connection is None:
                    await self._call(functools.partial(self.store.delete_webhook_subscriptions, sub.connection_id))
                    continue
                manager = manager or connection
                desired |= set(connection.webhooks.backend.event_plan(*parse_event_name(sub.event), native=True).native)
            if via is not None and str(via.info.metadata.get("orgId") or "") == current.org_key:
                manager = via
            if manager is None:
                manager = await self._any_connection(current)
            if manager is None:
                logger.warning("webhook endpoint %s has no connection left to manage it; forgetting it", ep_id)
                await self._call(lambda: self.store.delete_webhook_endpoint(ep_id))
                return
            await self._reconcile_endpoint(
                manager,
                manager.webhooks.backend,
                ep_id,
                current.org_key,
                current.url,
                current,
                desired,
                must_check=False,
            )

    async def _any_connection(self, endpoint: WebhookEndpointRecord) -> Connection | None:
        records = await self._call(lambda: self.store.list(connector_id=endpoint.connector_id))
        for record in records:
            if str(record.metadata.get("orgId") or "") == endpoint.org_key:
                connection = await self._connection(record.id)
                if connection is not None:
                    return connection
        return None

    async def _unsubscribe(self, cw: ConnectionWebhooks, events: Sequence[str] | None) -> int:
        info = cw.connection.info
        existing = await self._call(lambda: self.store.list_webhook_subscriptions(connection_id=info.id))
        if events is None:
            chosen = [s.event for s in existing]
        else:
            patterns = [check_pattern(e) for e in ([events] if isinstance(events, str) else events)]
            chosen = [s.event for s in existing if any(event_matches(p, s.event) for p in patterns)]
        if not chosen:
            return 0
        endpoints = {s.endpoint_id for s in existing if s.event in chosen and s.endpoint_id}
        if endpoints:
            cw.connection.require("webhooks::unsubscribe")
        count: int = await self._call(lambda: self.store.delete_webhook_subscriptions(info.id, chosen))
        for ep_id in sorted(e for e in endpoints if e):
            await self._shrink_endpoint(ep_id, cw.connection)
        remaining = await self._virtual_plans(cw)
        keep = set(_specs(remaining))
        gone = {spec for name in chosen for spec in cw.backend.event_plan(*parse_event_name(name), native=False).polls}
        for spec in gone - keep:
            await self._call(functools.partial(self.store.clear_poll_state, _poll_scope(info.id, spec)))
        return count

    async def _virtual_plans(self, cw: ConnectionWebhooks) -> dict[str, EventPlan]:
        info = cw.connection.info
        subs = await self._call(lambda: self.store.list_webhook_subscriptions(connection_id=info.id))
        out: dict[str, EventPlan] = {}
        for sub in subs:
            model, trigger = parse_event_name(sub.event)
            plan = cw.backend.event_plan(model, trigger, native=sub.native)
            if plan.polls:
                out[sub.event] = plan
        return out

    async def _list(self, cw: ConnectionWebhooks) -> list[Subscription]:
        info = cw.connection.info
        subs = await self._call(lambda: self.store.list_webhook_subscriptions(connection_id=info.id))
        endpoints: dict[str, WebhookEndpointRecord | None] = {}
        for ep_id in {s.endpoint_id for s in subs if s.endpoint_id}:
            endpoints[ep_id] = await self._call(functools.partial(self.store.get_webhook_endpoint, ep_id))
        return [_subscription(s, endpoints.get(s.endpoint_id or ""), cw.backend) for s in subs]

    # -- virtual webhooks -------------------------------------------------------------------------------

    async def _prepare_baseline(self, cw: ConnectionWebhooks, spec: str, wanted: frozenset[str]) -> _Baseline | None:
        """The starting watermark of a poller (``None`` when it has what it needs already)."""
        scope = _poll_scope(cw.connection.id, spec)
        backend = cw.backend
        needs_known = backend.needs_known(spec, wanted)
        state = await self._call(lambda: self.store.get_watermark(scope))
        if state is not None and (state.get("known") or not needs_known):
            return None
        outcome = await backend.baseline(spec, wanted=wanted, known=needs_known)
        # An existing poller keeps its position and only starts tracking the known objects.
        value = {**state, "known": True} if state is not None else {"backend": outcome.state, "known": needs_known}
        return _Baseline(scope, state, value, outcome.known_upsert if needs_known else None)

    async def _commit_baseline(self, baseline: _Baseline) -> None:
        await self._call(
            lambda: self.store.commit_events(
                [],
                now=self.clock(),
                watermark=WatermarkSwap(baseline.scope, baseline.expected, baseline.value),
                known_upsert={baseline.scope: baseline.known} if baseline.known is not None else None,
            )
        )

    async def _ensure_baseline(self, cw: ConnectionWebhooks, spec: str, wanted: frozenset[str]) -> None:
        baseline = await self._prepare_baseline(cw, spec, wanted)
        if baseline is not None:
            await self._commit_baseline(baseline)

    async def _poll(self, cw: ConnectionWebhooks) -> list[Event]:
        connection = cw.connection
        info = connection.info
        specs = _specs(await self._virtual_plans(cw))
        if not specs:
            return []
        events: list[Event] = []
        async with self._lease(f"poll:{info.id}", wait=False) as held:
            if not held:
                logger.debug("connection %s: another poller holds the lease; skipping", info.id)
                return []
            for spec, wanted in specs.items():
                events.extend(await self._poll_spec(cw, spec, wanted))
        self._count("polled", len(events))
        return events

    async def _poll_spec(self, cw: ConnectionWebhooks, spec: str, wanted: frozenset[str]) -> list[Event]:
        info = cw.connection.info
        backend = cw.backend
        scope = _poll_scope(info.id, spec)
        state = await self._call(lambda: self.store.get_watermark(scope))
        needs_known = backend.needs_known(spec, wanted)
        if state is None or (needs_known and not state.get("known")):
            await self._ensure_baseline(cw, spec, wanted)
            return []
        known = await self._call(lambda: self.store.poll_known(scope)) if needs_known else None
        now = self.clock()
        outcome = await backend.poll(spec, state=dict(state.get("backend") or {}), known=known, wanted=wanted, now=now)

        def commit() -> tuple[list[_Prepared], CommitResult]:
            prepared: list[_Prepared] = []
            for change in outcome.changes:
                if change.event not in wanted:
                    continue
                key = f"{backend.connector_id}:poll:{change.key}"
                event = self._event(backend, change, owner_id=info.owner_id, key=key, source="poll")
                prepared.append(self._candidate_sync(backend.connector_id, event, change, now))
            result = self.store.commit_events(
                [p.candidate for p in prepared],
                now=now,
                watermark=WatermarkSwap(scope, state, {**state, "backend": outcome.state}),
                known_upsert={scope: outcome.known_upsert} if needs_known and outcome.known_upsert else None,
                known_remove={scope: outcome.known_remove} if needs_known and outcome.known_remove else None,
                version_retention=self.options.version_retention,
                lease_seconds=self.options.outbox_lease,
            )
            return prepared, result

        prepared, result = await self._call(commit)
        if not result.swapped:
            logger.info("connection %s: another poller advanced %s first; its events win", info.id, spec)
            return []
        events, _ = await self._after_commit(prepared, result.accepted)
        return events

    async def poll_once(self) -> list[Event]:
        """Run one virtual-webhook round for every connection with virtual subscriptions.

        A connection whose round fails is logged and counted (``poll_failures``); the others still run.

        Returns:
            The events emitted.
        """
        subs = await self._call(lambda: self.store.list_webhook_subscriptions())
        events: list[Event] = []
        for connection_id in dict.fromkeys(s.connection_id for s in subs):
            connection = await self._connection(connection_id)
            if connection is None:
                await self._call(functools.partial(self.store.delete_webhook_subscriptions, connection_id))
                continue
            try:
                events.extend(await connection.webhooks.poll())
            except ConnectorError as exc:
                self._count("poll_failures")
                logger.warning("virtual webhooks of connection %s failed: %s", connection_id, exc)
        return events

    async def start_polling(self, *, interval: float = 60.0) -> None:
        """Poll every ``interval`` seconds in the background (and deliver due outbox rows) until stopped.

        Calling it again changes the interval.

        Args:
            interval: seconds between rounds.

        Raises:
            ConfigurationError: a non-positive interval.
        """
        if not interval > 0:
            raise ConfigurationError(f"the poll interval must be positive, got {interval!r}")
        self._poll_interval = float(interval)
        if self._poller is not None and not self._poller.done():
            return
        self._poll_stop = asyncio.Event()
        self._poller = asyncio.get_running_loop().create_task(self._poll_loop(), name="connectors-webhook-poller")

    async def _poll_loop(self) -> None:
        stop = self._poll_stop
        assert stop is not None
        while not stop.is_set():
            try:
                await self.poll_once()
                await self.deliver_pending()
            except Exception:
                logger.exception("virtual webhook round failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_interval):
                    await stop.wait()

    async def stop_polling(self) -> None:
        """Stop the background poller (a round in progress finishes first)."""
        if self._poll_stop is not None:
            self._poll_stop.set()
        if self._poller is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        self._poller = None

    @property
    def polling(self) -> bool:
        """Whether the background poller runs."""
        return self._poller is not None and not self._poller.done()

    async def aclose(self) -> None:
        """Stop the poller and the delivery worker, close streams and the forwarding client.

        A delivery round in progress finishes first (bounded by ``forward_timeout``); then every store call
        still running in a worker thread is waited for.
        """
        await self.stop_polling()
        self._closed = True
        worker, self._worker = self._worker, None
        if worker is not None:
            if self._wake is not None:
                self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(worker), self.options.forward_timeout + 5.0)
            except TimeoutError:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await worker
            except Exception:
                logger.exception("the webhook delivery worker failed")
        with contextlib.suppress(Exception):
            await self._flush_finished()
        for stream in list(self._streams):
            await stream.aclose()
        if self._forward_http is not None:
            await self._forward_http.aclose()
            self._forward_http = None
        idle = asyncio.Event()
        with self._inflight_lock:
            if self._inflight:
                self._idle_waiter = (asyncio.get_running_loop(), idle)
            else:
                idle.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(idle.wait(), 60.0)
        self._idle_waiter = None


@dataclass(frozen=True, slots=True)
class _NeedConnections:
    ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Baseline:
    scope: str
    expected: dict[str, Any] | None
    value: dict[str, Any]
    known: dict[str, str | None] | None


@dataclass(frozen=True, slots=True)
class _Prepared:
    candidate: EventCandidate
    event: Event


def _poll_scope(connection_id: str, spec: str) -> str:
    return f"poll:{connection_id}:{spec}"


def _chunks(items: Sequence[str], size: int) -> list[list[str]]:
    return [list(items[i : i + size]) for i in range(0, len(items), max(1, size))]


def _outbound_roles() -> tuple[str, ...]:
    return (
        "org.permission.outbound_webhook.read",
        "org.permission.outbound_webhook.create",
        "org.permission.outbound_webhook.update",
        "org.permission.outbound_webhook.delete",
    )


def _specs(plans: Mapping[str, EventPlan | None]) -> dict[str, frozenset[str]]:
    """Poll spec -> the unified events it serves."""
    out: dict[str, set[str]] = {}
    for name, plan in plans.items():
        for spec in plan.polls if plan else ():
            out.setdefault(spec, set()).add(name)
    return {spec: frozenset(names) for spec, names in sorted(out.items())}


def _expand(backend: WebhookBackend, events: Sequence[str]) -> list[str]:
    if isinstance(events, str) or not isinstance(events, Iterable):
        raise ConfigurationError("events must be a list of '<model>::<trigger>' names")
    out: dict[str, None] = {}
    for name in events:
        check_pattern(name)
        model, _, trigger = name.partition("::") if name != "*" else ("*", "", "*")
        models = backend.models() if model == "*" else (model,)
        triggers = TRIGGERS if trigger == "*" else (trigger,)
        for m in models:
            for t in triggers:
                out[f"{m}::{t}"] = None
    if not out:
        raise ConfigurationError("subscribe() needs at least one event")
    for name in out:
        parse_event_name(name)
    return builtins.list(out)


def _subscription(
    record: WebhookSubscriptionRecord, endpoint: WebhookEndpointRecord | None, backend: WebhookBackend
) -> Subscription:
    remote_id: str | None = None
    if record.native and endpoint is not None and endpoint.id == record.endpoint_id and endpoint.remotes:
        native = set(backend.event_plan(*parse_event_name(record.event), native=True).native)
        carrying = [r.id for r in endpoint.remotes if native & set(r.events)]
        remote_id = carrying[0] if carrying else endpoint.remotes[0].id
    return Subscription(
        event=record.event,
        native=record.native,
        kustomer_webhook_id=remote_id,
        created_at=record.created_at,
        connection_id=record.connection_id,
        owner_id=record.owner_id,
    )


def _subscriber(record: WebhookSubscriberRecord, *, secret: str | None = None) -> Subscriber:
    return Subscriber(
        id=record.id,
        owner_id=record.owner_id,
        url=record.url,
        events=record.events,
        secret=secret,
        created_at=record.created_at,
    )


# --------------------------------------------------------------------------------------------------------
# Per connection


class ConnectionWebhooks:
    """Webhook subscriptions of one connection (``connection.webhooks``).

    Args:
        connection: the connection.
    """

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.hub: WebhookHub = connection.hub.webhooks
        self._backend: WebhookBackend | None = None

    def __repr__(self) -> str:
        return f"ConnectionWebhooks(connection={self.connection.id!r})"

    @property
    def backend(self) -> WebhookBackend:
        """The connector's webhook backend for this connection."""
        if self._backend is None:
            cached = getattr(self.connection, "_webhook_backend", None)
            if cached is None:
                cached = self.connection.connector.webhook_backend()
                self.connection._webhook_backend = cached  # type: ignore[attr-defined]
            self._backend = cast("WebhookBackend", cached)
        return self._backend

    async def subscribe(self, events: Sequence[str], url: str | None = None) -> list[Subscription]:
        """Subscribe to unified events; idempotent per (connection, event).

        Events the provider pushes are delivered by ONE provider webhook per (org, ``url``), created or
        extended as needed and shared with every connection of the org (its signing token is stored
        encrypted). Others (companies, CRM objects, deletions...) become virtual webhooks: polled by
        :meth:`WebhookHub.start_polling` / :meth:`poll`, starting now (nothing older is emitted). Without
        ``url`` every event is polled.

        Args:
            events: ``<model>::<trigger>`` names; ``<model>::*`` and ``*`` expand.
            url: where the provider should POST deliveries (the host app's ``POST /webhooks/kustomer``).

        Returns:
            The subscriptions.

        Raises:
            ConfigurationError: an unknown model or trigger, or a bad URL.
            InsufficientPermissionsError: the credential lacks the webhook or read roles.
            WebhookLimitError: the org has no room for another provider webhook.
        """
        return await self.hub._subscribe(self, events, url)

    async def unsubscribe(self, events: Sequence[str] | None = None) -> int:
        """Remove subscriptions (all when ``events`` is ``None``; patterns allowed).

        Provider webhooks shrink to what the org's remaining subscriptions need, and are deleted when none
        remains.

        Returns:
            How many subscriptions were removed.
        """
        return await self.hub._unsubscribe(self, events)

    async def list(self) -> builtins.list[Subscription]:
        """This connection's subscriptions."""
        return await self.hub._list(self)

    async def poll(self) -> builtins.list[Event]:
        """One virtual-webhook round for this connection (nothing when another poller holds its lease).

        Returns:
            The events emitted (also dispatched to handlers, streams and subscribers).
        """
        return await self.hub._poll(self)

    async def send_to_hook(self, hook_url: str, payload: Any, **options: Any) -> Any:
        """Post ``payload`` to a provider inbound hook (Kustomer: ``/v1/hooks/web/{hash}``).

        See :func:`connectors.kustomer.webhooks.send_to_hook` for the options and result.
        """
        sender = getattr(self.backend, "send_to_hook", None)
        if sender is None:
            from connectors.errors import UnsupportedOperationError

            raise UnsupportedOperationError("this connector has no inbound hooks", operation="hooks::send")
        self.connection.require("hooks::send")
        try:
            return await sender(hook_url, payload, **options)
        except PermissionDeniedError as exc:
            raise self.connection.permission_error("hooks::send", exc) from exc
