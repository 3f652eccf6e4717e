"""Webhooks over HTTP: the Kustomer receiver, Kustomer subscriptions, forwarding subscribers, and an SSE stream.

* ``POST /webhooks/kustomer`` — where Kustomer posts outbound webhooks. No bearer token: every delivery is
  verified by its HMAC signature (``401 webhook_signature`` when wrong, ``400 webhook_payload`` when
  malformed), deduplicated and dispatched by :class:`connectors.runtime.webhooks.WebhookHub`.
* ``GET|POST|DELETE /webhooks/subscriptions`` — the Kustomer events a connection listens to (Kustomer is told
  to post them to ``<public url>/webhooks/kustomer``).
* ``GET|POST /webhooks/subscribers`` and ``DELETE /webhooks/subscribers/{id}`` — URLs of the owner's own
  that receive unified events, signed with a per-subscriber secret (shown once, at creation).
* ``GET /events`` — a Server-Sent Events stream of the owner's unified events (``event: <model>::<trigger>``,
  ``id: <idempotency key>``, ``data: <Event JSON>``), with keep-alive comments.

A session restricted to some operations only sees events of the models it may read (``<model>::list`` or
``<model>::retrieve``).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Final
from urllib.parse import urlsplit

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse

from connectors.server.envelope import split_list
from connectors.server.errors import HTTPProblem, validation_problem
from connectors.server.security import ConnectionDep, Principal, PrincipalDep, not_found
from connectors.server.state import ServerState, server_state
from unified_models import CUSTOM_PREFIX, Event

__all__ = ["SubscriberCreate", "SubscriptionCreate", "build_router", "format_sse", "principal_sees"]

_PATTERN: Final = re.compile(r"^(\*|[A-Za-z][A-Za-z0-9_.:-]*::(\*|created|updated|deleted))$")


class SubscriberCreate(BaseModel):
    """Body of ``POST /webhooks/subscribers``."""

    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, extra="forbid")

    url: str = Field(min_length=1, max_length=2000, description="Where unified events are POSTed.")
    events: list[str] = Field(min_length=1, max_length=200, description="genericContact::created, crmStage::*, *")


class SubscriptionCreate(BaseModel):
    """Body of ``POST /webhooks/subscriptions``."""

    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, extra="forbid")

    events: list[str] = Field(min_length=1, max_length=200, description="genericContact::created, ...")


def _check_patterns(patterns: Sequence[str], *, path: str, wildcard: bool = True) -> list[str]:
    problems = [
        {"path": f"{path}[{i}]", "message": "expected <model>::<created|updated|deleted|*> or *"}
        for i, p in enumerate(patterns)
        if not _PATTERN.match(p) or (not wildcard and "*" in p)
    ]
    if problems:
        raise validation_problem(problems)
    return list(dict.fromkeys(patterns))


def _model_of(pattern_or_event: str) -> str:
    model = pattern_or_event.split("::", 1)[0]
    return "custom" if model.startswith(CUSTOM_PREFIX) else model


def principal_sees(principal: Principal, model: str) -> bool:
    """Whether ``principal`` may receive events of ``model``."""
    prefix = _model_of(model)
    return principal.can(f"{prefix}::list") or principal.can(f"{prefix}::retrieve")


def format_sse(event: Event) -> bytes:
    """One Server-Sent Events message for ``event`` (single-line JSON data)."""
    data = event.model_dump_json(by_alias=True)
    return f"id: {event.idempotency_key}\nevent: {event.name}\ndata: {data}\n\n".encode()


def _check_subscriber_url(state: ServerState, url: str) -> str:
    parts = urlsplit(url)
    problem = None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        problem = "must be an absolute https URL"
    elif parts.scheme == "http" and not state.config.allow_http_subscribers:
        problem = "must use https (set CONNECTORS_ALLOW_HTTP_SUBSCRIBERS=true to allow http)"
    elif parts.username is not None or parts.password is not None:
        problem = "must not carry credentials"
    elif parts.fragment:
        problem = "must not have a fragment"
    if problem is not None:
        raise validation_problem([{"path": "body.url", "message": problem}])
    return url


async def receive_kustomer(request: Request) -> JSONResponse:
    """Kustomer's outbound webhook deliveries (verified by signature; no bearer token)."""
    hub = server_state(request).hub
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    result = await hub.webhooks.handle(body, headers, connector_id="kustomer")
    return JSONResponse(
        {
            "object": "delivery",
            "accepted": bool(result.accepted),
            "duplicate": bool(result.duplicate),
            "stale": bool(result.stale),
            "events": len(result.events),
        }
    )


async def list_subscriptions(principal: PrincipalDep, connection: ConnectionDep) -> JSONResponse:
    """The Kustomer events this connection listens to."""
    subscriptions = await connection.webhooks.list()
    visible = [s for s in subscriptions if principal_sees(principal, s.event)]
    return JSONResponse({"object": "list", "data": [s.to_dict() for s in visible], "next": None})


async def create_subscriptions(
    request: Request, body: SubscriptionCreate, principal: PrincipalDep, connection: ConnectionDep
) -> JSONResponse:
    """Listen to Kustomer events (creates or reuses the org's Kustomer outbound webhook)."""
    principal.require("webhooks::subscribe")
    events = _check_patterns(body.events, path="body.events", wildcard=False)
    for event in events:
        if not principal_sees(principal, event):
            raise HTTPProblem(403, "operation_not_allowed", f"this session cannot read {_model_of(event)}")
    subscriptions = await connection.webhooks.subscribe(events, server_state(request).webhook_url)
    return JSONResponse({"object": "list", "data": [s.to_dict() for s in subscriptions], "next": None}, status_code=201)


async def delete_subscriptions(
    principal: PrincipalDep,
    connection: ConnectionDep,
    events: Annotated[list[str] | None, Query(description="Events to stop (all when omitted).")] = None,
) -> JSONResponse:
    """Stop listening to some (or all) Kustomer events."""
    principal.require("webhooks::unsubscribe")
    names = _check_patterns(split_list(events), path="query.events", wildcard=False) if events else None
    removed = await connection.webhooks.unsubscribe(names)
    return JSONResponse({"object": "subscriptions", "removed": removed})


async def list_subscribers(request: Request, principal: PrincipalDep) -> JSONResponse:
    """The owner's forwarding subscribers (their secrets are never shown again)."""
    owner = principal.require_owner()
    subscribers = await server_state(request).hub.webhooks.list_subscribers(owner_id=owner)
    return JSONResponse({"object": "list", "data": [s.to_dict() for s in subscribers], "next": None})


async def create_subscriber(request: Request, body: SubscriberCreate, principal: PrincipalDep) -> JSONResponse:
    """Forward the owner's unified events to ``url``, signed (``X-Connectors-Signature``); the secret is shown once."""
    state = server_state(request)
    owner = principal.require_owner()
    url = _check_subscriber_url(state, body.url)
    events = _check_patterns(body.events, path="body.events")
    if principal.operations is not None:
        for i, event in enumerate(events):
            if event == "*" or not principal_sees(principal, event):
                raise HTTPProblem(
                    403, "operation_not_allowed", f"body.events[{i}]: this session cannot read {_model_of(event)}"
                )
    subscriber = await state.hub.webhooks.add_subscriber(owner_id=owner, url=url, events=events)
    return JSONResponse(subscriber.to_dict(), status_code=201)


async def delete_subscriber(request: Request, subscriber_id: str, principal: PrincipalDep) -> JSONResponse:
    """Stop forwarding to a subscriber."""
    owner = principal.require_owner()
    removed = await server_state(request).hub.webhooks.remove_subscriber(owner_id=owner, id=subscriber_id)
    if not removed:
        raise not_found("subscriber")
    return JSONResponse({"object": "webhookSubscriber", "id": subscriber_id, "deleted": True})


async def _event_stream(
    state: ServerState, principal: Principal, patterns: list[str], *, request: Request
) -> AsyncIterator[bytes]:
    assert state.events is not None
    feed = state.events.open(owner_id=principal.owner_id, patterns=patterns)
    heartbeat = state.config.sse_heartbeat_seconds
    try:
        await feed.start()
        yield b"retry: 3000\n: connected\n\n"
        while True:
            try:
                event = await feed.get(heartbeat)
            except TimeoutError:
                if await request.is_disconnected():
                    return
                yield b": keep-alive\n\n"
                continue
            except StopAsyncIteration:
                return
            if principal_sees(principal, event.model):
                yield format_sse(event)
    finally:
        await feed.aclose()


async def stream_events(
    request: Request,
    principal: PrincipalDep,
    events: Annotated[
        list[str] | None, Query(description="Patterns: genericContact::updated, crmStage::*, * (default).")
    ] = None,
) -> StreamingResponse:
    """Server-Sent Events of the owner's unified events (an operator naming no owner sees every owner's)."""
    state = server_state(request)
    patterns = _check_patterns(split_list(events or []) or ["*"], path="query.events")
    stream = _event_stream(state, principal, patterns, request=request)
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no", "Connection": "keep-alive"}
    return StreamingResponse(stream, media_type="text/event-stream", headers=headers)


def build_router() -> APIRouter:
    """The webhook routes."""
    router = APIRouter(tags=["webhooks"])
    router.add_api_route(
        "/webhooks/kustomer", receive_kustomer, methods=["POST"], summary="Kustomer outbound webhook receiver"
    )
    router.add_api_route("/webhooks/subscriptions", list_subscriptions, methods=["GET"], summary="Kustomer events")
    router.add_api_route(
        "/webhooks/subscriptions", create_subscriptions, methods=["POST"], summary="Listen to Kustomer events"
    )
    router.add_api_route(
        "/webhooks/subscriptions", delete_subscriptions, methods=["DELETE"], summary="Stop Kustomer events"
    )
    router.add_api_route("/webhooks/subscribers", list_subscribers, methods=["GET"], summary="Forwarding targets")
    router.add_api_route(
        "/webhooks/subscribers", create_subscriber, methods=["POST"], summary="Forward events to a URL (signed)"
    )
    router.add_api_route(
        "/webhooks/subscribers/{subscriber_id}", delete_subscriber, methods=["DELETE"], summary="Remove a subscriber"
    )
    router.add_api_route(
        "/events", stream_events, methods=["GET"], summary="Server-Sent Events of unified events", tags=["events"]
    )
    return router
