"""The :class:`Sandbox`: state, seed data, auth, background work and the FastAPI app, in one object."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, cast

import httpx
from fastapi import APIRouter, FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from connectors.__about__ import __version__
from connectors.kustomer.sandbox.auth import DEFAULT_DEMO_ROLES, Authenticator, decode_jwt
from connectors.kustomer.sandbox.bulk import BulkRunner
from connectors.kustomer.sandbox.errors import SandboxError, error_response
from connectors.kustomer.sandbox.faults import FaultInjector
from connectors.kustomer.sandbox.middleware import SandboxMiddleware
from connectors.kustomer.sandbox.oauth import OAuthServer
from connectors.kustomer.sandbox.oauth import build_router as oauth_router
from connectors.kustomer.sandbox.ratelimit import RateLimiter
from connectors.kustomer.sandbox.resources import (
    ConversationType,
    CustomerType,
    ResourceType,
    TagType,
    build_resource_types,
)
from connectors.kustomer.sandbox.routes import admin, conversations, customers, klasses, people, platform
from connectors.kustomer.sandbox.search import SearchEngine
from connectors.kustomer.sandbox.seed import seed
from connectors.kustomer.sandbox.settings import REGION_PODS, Region, SandboxSettings
from connectors.kustomer.sandbox.store import Org, Record, SandboxState, TokenRecord
from connectors.kustomer.sandbox.timeutil import IdFactory
from connectors.kustomer.sandbox.transport import SandboxTransport
from connectors.kustomer.sandbox.webhooks import WebhookDispatcher

__all__ = ["DEFAULT_BASE_URL", "Sandbox", "create_app"]

DEFAULT_BASE_URL: Final = "http://sandbox.kustomer.test"
"""Base URL of an in-process sandbox (``httpx.AsyncClient(transport=sb.transport(), base_url=...)``)."""

_TARGETS: Final = {
    "customer": "customers",
    "company": "companies",
    "conversation": "conversations",
    "message": "messages",
    "note": "notes",
    "user": "users",
    "team": "teams",
}
_DESCRIPTION: Final = (
    "A faithful local emulator of the Kustomer REST API (JSON:API envelopes, search DSL, bulk jobs, OAuth, "
    "outbound webhooks, inbound hooks, rate limits, fault injection). Admin routes live under /sandbox."
)


class Sandbox:
    """A local Kustomer org: in-memory data seeded from ``settings.seed`` plus the ASGI app serving it.

    Args:
        settings: configuration (defaults to ``SandboxSettings()``); mutable at runtime via :attr:`settings`.
        clock: time source in epoch seconds (default ``time.time``); drives timestamps, token expiry, rate
            windows and OAuth TTLs. Assign :attr:`clock` to move time in tests.
        webhook_transport: httpx transport outbound webhooks are delivered through (e.g. an
            ``httpx.ASGITransport`` onto a receiver app); None delivers over real HTTP.
        extra_routers: more FastAPI routers to mount (they get auth and rate limiting from the middleware).
        base_url: the URL clients reach the sandbox at (used in hook URLs); ``running_sandbox`` and ``serve``
            set it.

    Attributes:
        settings: live settings.
        clock: time source.
        base_url: public base URL.
        state: the in-memory store (:class:`~connectors.kustomer.sandbox.store.SandboxState`).
        app: the FastAPI app.
        webhook_transport: see above.
    """

    def __init__(
        self,
        settings: SandboxSettings | None = None,
        *,
        clock: Callable[[], float] | None = None,
        webhook_transport: httpx.AsyncBaseTransport | None = None,
        extra_routers: Iterable[APIRouter] = (),
        base_url: str = DEFAULT_BASE_URL,
    ) -> None:
        self.settings = settings if settings is not None else SandboxSettings()
        self.clock: Callable[[], float] = clock or time.time
        self.base_url = base_url
        self.webhook_transport = webhook_transport
        self.limiter = RateLimiter()
        self._build_state()
        self.app = self._build_app()
        for router in extra_routers:
            self.include_router(router)

    # -- construction ----------------------------------------------------------------------------------------
    def _build_state(self) -> None:
        self.ids = IdFactory(self.settings.seed)
        self.types: dict[str, ResourceType] = build_resource_types(self)
        org = Org(self.ids.new(), self.settings.org_name)
        collections = {rt.collection_name: rt.new_collection() for rt in self.types.values()}
        self.state = SandboxState(org, collections)
        self.owner_id = ""
        self.auth = Authenticator(self)
        self.oauth = OAuthServer(self)
        self.webhooks = WebhookDispatcher(self)
        self.bulk = BulkRunner(self)
        self.search = SearchEngine(self)
        self.faults = FaultInjector(self.settings.seed)
        self.limiter.reset()
        seed(self)

    def _build_app(self) -> FastAPI:
        app = FastAPI(title="Kustomer sandbox", version=__version__, description=_DESCRIPTION, redoc_url=None)
        app.state.sandbox = self
        app.add_exception_handler(SandboxError, _sandbox_error)
        app.add_exception_handler(StarletteHTTPException, _http_error)
        app.add_exception_handler(RequestValidationError, _validation_error)
        for router in (
            admin.build_router(),
            oauth_router(),
            platform.build_search_router(),
            platform.build_bulk_router(),
            customers.build_router(),
            conversations.build_router(),
            people.build_router(),
            klasses.build_router(),
            platform.build_platform_router(),
        ):
            app.include_router(router)
        from connectors.kustomer.sandbox.commands import build_commands_router

        app.include_router(build_commands_router(self))
        app.add_middleware(SandboxMiddleware, sandbox=self)
        return app

    def include_router(self, router: APIRouter, **kwargs: Any) -> None:
        """Mount another router (e.g. ``POST /v1/commands/{name}/run``); see ``routes.common`` for helpers."""
        self.app.include_router(router, **kwargs)

    def reset(self, settings: SandboxSettings | None = None) -> None:
        """Reseed: replace ALL data, tokens, OAuth clients and logs (optionally with new settings)."""
        if settings is not None:
            self.settings = settings
        self._build_state()

    # -- typed accessors -------------------------------------------------------------------------------------
    @property
    def customer_type(self) -> CustomerType:
        """The customer resource type."""
        return cast(CustomerType, self.types["customer"])

    @property
    def conversation_type(self) -> ConversationType:
        """The conversation resource type."""
        return cast(ConversationType, self.types["conversation"])

    @property
    def tag_type(self) -> TagType:
        """The tag resource type."""
        return cast(TagType, self.types["tag"])

    @property
    def org_id(self) -> str:
        """The org's id."""
        return self.state.org.id

    # -- time and bookkeeping --------------------------------------------------------------------------------
    def now_ms(self) -> int:
        """The clock in epoch milliseconds."""
        return round(self.clock() * 1000)

    def state_version(self) -> int:
        """Changes whenever any collection changes (search cache key)."""
        return sum(coll.version for coll in self.state.collections.values())

    def target_exists(self, target: str, record_id: str) -> bool:
        """Whether ``record_id`` exists in a metadata ``target`` (``user``, ``kobject_order``...)."""
        name = _TARGETS.get(target)
        if name is not None:
            return self.state.collections[name].get(record_id) is not None
        klass = self.state.klass_by_name(target.removeprefix("kobject_"))
        record = self.state.kobjects.get(record_id)
        return klass is not None and record is not None and record.rels.get("klass") == klass.id

    def _window(self) -> int:
        return math.floor(self.clock() / self.settings.rate_window_seconds)

    def check_create_limit(self, customer_id: str) -> None:
        """Raise 429 when the customer reached ``create_limit_per_customer`` in this window.

        Raises:
            SandboxError: 429.
        """
        used = self.state.create_counts.get((customer_id, self._window()), 0)
        limit = self.settings.create_limit_per_customer
        if used >= limit:
            raise SandboxError(
                429,
                f"Create limit of {limit} conversations/messages/notes/KObjects per customer per "
                f"{self.settings.rate_window_seconds:g}s reached (send importedAt to import history)",
                meta={"customer": customer_id, "limit": limit},
            )

    def count_create(self, customer_id: str) -> None:
        """Count one create against the customer's limit."""
        window = self._window()
        counts = self.state.create_counts
        if len(counts) > 10_000:
            for key in [k for k in counts if k[1] != window]:
                del counts[key]
        counts[(customer_id, window)] = counts.get((customer_id, window), 0) + 1

    # -- public helpers --------------------------------------------------------------------------------------
    def transport(self) -> httpx.AsyncBaseTransport:
        """An in-process transport: ``httpx.AsyncClient(transport=sb.transport(), base_url=sb.base_url)``."""
        return SandboxTransport(self.app)

    def mint_api_key(
        self,
        roles: Sequence[str] = DEFAULT_DEMO_ROLES,
        name: str = "test key",
        expires_in: float | None = None,
        region: Region | None = None,
    ) -> str:
        """Create an API key backed by a new machine user; return the bearer token.

        Args:
            roles: granted roles (default: every role the sandbox knows).
            name: the key's label (also the machine user's name).
            expires_in: seconds until it expires; None never expires.
            region: issue the key for another region's pod (to provoke the region-mismatch 401).

        Returns:
            The JWT to send as ``Authorization: Bearer <token>``.
        """
        now = self.now_ms()
        user = Record(
            "user",
            self.ids.new(),
            {
                "name": name,
                "displayName": name,
                "email": f"api-key-{len(self.state.tokens) + 1}@machine.example.com",
                "userType": "machine",
                "roles": list(roles),
                "pending": False,
            },
            {},
            now,
            now,
            now,
            created_by=self.owner_id or None,
            modified_by=self.owner_id or None,
        )
        self.state.users.insert(user)
        pod = REGION_PODS[region] if region else None
        _, token = self.auth.mint(
            kind="api_key",
            name=name,
            user_id=user.id,
            user_type="machine",
            roles=roles,
            expires_in=expires_in,
            pod=pod,
        )
        return token

    def token_record(self, token: str) -> TokenRecord:
        """The record of a bearer token (API key or access token).

        Raises:
            KeyError: not a token of this sandbox.
        """
        try:
            claims = decode_jwt(token, self.auth._key)
        except SandboxError as exc:
            raise KeyError("not a token of this sandbox") from exc
        return self.state.tokens[str(claims.get("id"))]

    def revoke_token(self, token_or_id: str) -> bool:
        """Revoke an API key or access token by id or by token; returns whether one was found."""
        record = self.state.tokens.get(token_or_id)
        if record is None:
            try:
                record = self.token_record(token_or_id)
            except KeyError:
                return False
        record.revoked = True
        return True

    def register_oauth_client(
        self, client_id: str, client_secret: str | None, redirect_uris: Sequence[str], public: bool = False
    ) -> None:
        """Register an OAuth client (an installed app) with exact redirect URIs.

        Raises:
            ValueError: a confidential client without secret, or no redirect URI.
        """
        self.oauth.register_client(client_id, client_secret, redirect_uris, public=public)

    async def drain_webhooks(self) -> None:
        """Wait until every outbound webhook delivery (with all its retries) has finished.

        Deliveries always end (bounded attempts, each with a timeout); wrap the call in ``asyncio.timeout``
        to bound the wait further.
        """
        await self.webhooks.drain()

    async def drain_bulk(self) -> None:
        """Wait until every bulk job is complete."""
        await self.bulk.drain()

    async def drain(self) -> None:
        """Wait for bulk jobs, then for the webhook deliveries they caused."""
        await self.drain_bulk()
        await self.drain_webhooks()


def create_app(settings: SandboxSettings | None = None) -> FastAPI:
    """Convenience: ``Sandbox(settings).app``."""
    return Sandbox(settings).app


# -- exception handlers --------------------------------------------------------------------------------------
async def _sandbox_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SandboxError)
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail = "Not Found" if exc.status_code == 404 else str(exc.detail)
    if exc.status_code == 404:
        detail = f"No route for {request.method} {request.url.path}"
    return error_response(exc.status_code, detail, headers=exc.headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(part) for part in first.get("loc", ()))
    return error_response(400, f"{where}: {first.get('msg')}")
