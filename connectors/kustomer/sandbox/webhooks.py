"""Outbound webhook events and their delivery (kustomer-api.md §2.9).

On every create/update of a customer, conversation, message, user or team (and tag, when
``tag_events_enabled``) through ANY route, including bulk jobs, PUT/PATCH and server-side counter updates,
the sandbox POSTs to each enabled subscribed webhook::

    {"id": <event id>, "name": "kustomer.customer.update", "org": <org id>, "partition": <org id>,
     "data": {type, id, attributes, relationships, links},          # the resource as GET returns it
     "changes": null                                                 # on create
              | {"attributes": {"name": {"before": "Ann", "after": "Anna"}},
                 "relationships": {"company": {"before": {"type": "company", "id": ...}, "after": null}}}}

``changes`` lists only what differs (``updatedAt``, ``modifiedAt`` and ``rev`` left out; relationship values
are their ``data``). Headers: ``Content-Type: application/json``, ``X-Kustomer-Webhook-Event: <name>``,
``X-Kustomer-Webhook-Signature: <lowercase hex HMAC-SHA256(key=webhook token, msg=raw body)>``, plus the
webhook's custom headers.

Delivery is asynchronous (an asyncio task started by the request that caused the event; no lifespan needed),
over real HTTP or through ``sb.webhook_transport``. Non-2xx answers and connection errors are retried
``webhook_max_attempts`` times with exponential backoff from ``webhook_retry_base_seconds``. Events of one
webhook are delivered in order unless ``webhook_reorder`` is on; ``webhook_duplicate_rate`` delivers some
twice. Every attempt is recorded in ``sb.state.webhook_deliveries``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import httpx

from connectors.kustomer.sandbox.store import DeliveryAttempt, Record

if TYPE_CHECKING:
    from connectors.kustomer.sandbox.app import Sandbox

__all__ = ["BASE_EVENTS", "TAG_EVENTS", "WebhookDispatcher", "sign"]

BASE_EVENTS = tuple(
    f"kustomer.{resource}.{action}"
    for resource in ("customer", "conversation", "message", "user", "team")
    for action in ("create", "update")
)
"""The ten confirmed subscribable events."""
TAG_EVENTS = ("kustomer.tag.create", "kustomer.tag.update")
"""Tag events (names UNCONFIRMED), offered when ``tag_events_enabled``."""


def sign(token: str, body: bytes) -> str:
    """``X-Kustomer-Webhook-Signature``: lowercase hex HMAC-SHA256 of the raw body keyed by the token."""
    return hmac.new(token.encode(), body, hashlib.sha256).hexdigest()


class _KeepOpen(httpx.AsyncBaseTransport):
    """Lends an injected transport to short-lived clients without letting them close it."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        return None


class WebhookDispatcher:
    """Builds events and runs their deliveries.

    Args:
        sandbox: the owning sandbox.
    """

    def __init__(self, sandbox: Sandbox) -> None:
        self._sb = sandbox
        self._rng = random.Random(f"webhooks:{sandbox.settings.seed}")
        self._tasks: set[asyncio.Task[None]] = set()
        self._last: dict[str, asyncio.Task[None]] = {}
        self._unscheduled: list[tuple[Record, str, bytes, str, bool]] = []
        self._failures: dict[str, int] = {}

    @staticmethod
    def new_token() -> str:
        """A fresh signing token."""
        return secrets.token_hex(32)

    def event_names(self) -> tuple[str, ...]:
        """Events webhooks may subscribe to."""
        return BASE_EVENTS + (TAG_EVENTS if self._sb.settings.tag_events_enabled else ())

    def _subscribers(self, event: str) -> list[Record]:
        return [
            hook
            for hook in self._sb.state.outbound_webhooks
            if hook.attrs.get("enabled", True) and event in (hook.attrs.get("events") or ())
        ]

    def wants(self, event: str) -> bool:
        """Whether any enabled webhook subscribes to ``event`` (so the event must be built)."""
        return bool(self._subscribers(event))

    def emit(self, event: str, data: dict[str, Any], changes: dict[str, Any] | None) -> None:
        """Build the envelope and schedule a delivery to each subscriber."""
        sb = self._sb
        subscribers = self._subscribers(event)
        if not subscribers:
            return
        org = sb.state.org.id
        event_id = sb.ids.new()
        envelope = {
            "id": event_id,
            "name": event,
            "org": org,
            "partition": org,
            "data": data,
            "changes": changes,
        }
        sb.state.webhook_events.append(envelope)
        body = json.dumps(envelope, separators=(",", ":")).encode()
        for hook in subscribers:
            duplicate = self._rng.random() < sb.settings.webhook_duplicate_rate
            self._schedule(hook, event, body, event_id, duplicate=False)
            if duplicate:
                self._schedule(hook, event, body, event_id, duplicate=True)

    def _schedule(self, hook: Record, event: str, body: bytes, event_id: str, *, duplicate: bool) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._unscheduled.append((hook, event, body, event_id, duplicate))
            return
        previous = None if self._sb.settings.webhook_reorder else self._last.get(hook.id)
        if previous is not None and (previous.done() or previous.get_loop() is not loop):
            previous = None
        task = loop.create_task(self._deliver(hook, event, body, event_id, duplicate, previous))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._last[hook.id] = task

    def _flush_unscheduled(self) -> None:
        pending, self._unscheduled = self._unscheduled, []
        for hook, event, body, event_id, duplicate in pending:
            self._schedule(hook, event, body, event_id, duplicate=duplicate)

    @property
    def pending(self) -> int:
        """Deliveries not finished yet."""
        return len(self._tasks) + len(self._unscheduled)

    async def drain(self) -> None:
        """Wait until every scheduled delivery finished all its attempts (polls: works across loops)."""
        self._flush_unscheduled()
        loop = asyncio.get_running_loop()
        while self._tasks:
            local = [task for task in self._tasks if task.get_loop() is loop]
            if local:
                await asyncio.wait(local)
            else:  # the tasks run on another loop (a sandbox served in a thread): poll
                await asyncio.sleep(0.002)

    async def _deliver(
        self,
        hook: Record,
        event: str,
        body: bytes,
        event_id: str,
        duplicate: bool,
        previous: asyncio.Task[None] | None,
    ) -> None:
        sb = self._sb
        settings = sb.settings
        if previous is not None:
            await asyncio.wait([previous])
        if settings.webhook_reorder:
            await asyncio.sleep(self._rng.uniform(0, settings.webhook_reorder_max_delay_seconds))
        token = str(hook.attrs.get("token", ""))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Kustomer-Webhooks (unified-connectors sandbox)",
            "X-Kustomer-Webhook-Event": event,
            "X-Kustomer-Webhook-Signature": sign(token, body),
        }
        for header in hook.attrs.get("headers") or ():
            headers[str(header["name"])] = str(header["value"])
        url = str(hook.attrs.get("url"))
        delivery_id = sb.ids.new()
        for attempt in range(1, settings.webhook_max_attempts + 1):
            record = DeliveryAttempt(
                delivery_id=delivery_id,
                event_id=event_id,
                event=event,
                webhook_id=hook.id,
                url=url,
                attempt=attempt,
                at=sb.clock(),
                body=body,
                headers=dict(headers),
                duplicate=duplicate,
            )
            try:
                record.status_code = await self._post(url, body, headers)
            except httpx.HTTPError as exc:
                record.error = f"{type(exc).__name__}: {exc}"
            sb.state.webhook_deliveries.append(record)
            if record.ok:
                self._failures[hook.id] = 0
                return
            if attempt < settings.webhook_max_attempts:
                await asyncio.sleep(settings.webhook_retry_base_seconds * 2 ** (attempt - 1))
        failures = self._failures.get(hook.id, 0) + 1
        self._failures[hook.id] = failures
        limit = settings.webhook_disable_after_failures
        if limit and failures >= limit and hook.id in sb.state.outbound_webhooks:
            hook.attrs["enabled"] = False

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        transport = self._sb.webhook_transport
        timeout = self._sb.settings.webhook_timeout_seconds
        async with httpx.AsyncClient(
            transport=_KeepOpen(transport) if transport is not None else None, timeout=timeout
        ) as client:
            response = await client.post(url, content=body, headers=headers)
            return response.status_code

    def deliveries_for(self, webhook_id: str) -> Sequence[DeliveryAttempt]:
        """Recorded attempts of one webhook."""
        return [d for d in self._sb.state.webhook_deliveries if d.webhook_id == webhook_id]
