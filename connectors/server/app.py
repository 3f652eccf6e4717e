"""The host app: :func:`create_app` builds the FastAPI application that ``connectors serve`` runs.

::

    from connectors.server import create_app
    app = create_app()                       # settings from the environment; embedded demo without Kustomer config
    app = create_app(hub=my_hub)             # your own hub (you close it)

Routes (OpenAPI at ``/docs``): ``/resources/{model}[/{id}]``, ``/fields/{model}``, ``/connections``,
``/sessions``, ``/operations``, ``/oauth/callback``, ``/proxy/{path}``, ``/webhooks/...``, ``/events``,
``/connect`` and ``/healthz``. Nothing is kept per process that another worker would need: OAuth state and
connections live in the store, session tokens and cursors are signed with keys derived from the deployment
key, and the rate budget is in Redis when ``CONNECTORS_REDIS_URL`` is set.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from connectors.__about__ import __version__
from connectors.runtime.connection import Connectors
from connectors.server.config import ServerConfig
from connectors.server.embedded import (
    SANDBOX_PREFIX,
    EmbeddedKustomer,
    EmbeddedOptions,
    is_embedded_default,
    twin_origins,
)
from connectors.server.errors import install_error_handlers
from connectors.server.events import EventSource, event_source_for
from connectors.server.limits import BodySizeLimitMiddleware
from connectors.server.routes import connect, connections, proxy, webhooks
from connectors.server.routes import resources as resource_routes
from connectors.server.sessions import SessionCodec
from connectors.server.state import ServerState, server_state
from connectors.settings import Settings

__all__ = ["ReadyHook", "create_app"]

ReadyHook = Callable[[ServerState], Awaitable[None] | None]

_DESCRIPTION = (
    "Kustomer through unified models (Morph-compatible `/resources/{model}`), connections (API key or OAuth), "
    "a raw proxy, webhooks and an event stream.\n\n"
    "Authenticate with `Authorization: Bearer <operator key>` plus `X-Connectors-Owner: <owner>`, or with a "
    'session token from `POST /sessions` (scoped to one owner). Errors are `{"error": {type, code, message}}`.'
)


def create_app(
    *,
    settings: Settings | None = None,
    hub: Connectors | None = None,
    config: ServerConfig | None = None,
    embedded: EmbeddedOptions | bool | None = None,
    operator_key: str | None = None,
    on_ready: ReadyHook | None = None,
) -> FastAPI:
    """Build the host app.

    Args:
        settings: deployment settings (default: the hub's, else :meth:`Settings.from_env`).
        hub: a hub to serve (the caller closes it); by default the app opens one at startup and closes it at
            shutdown.
        config: host-app settings (default: :meth:`ServerConfig.from_env`).
        embedded: run the embedded demo (an in-process sandbox mounted at ``/sandbox-kustomer`` and a demo
            owner). ``None``: when the settings configure no Kustomer at all and no hub is given.
        operator_key: the operator secret (default: ``settings.operator_key``); ``None`` disables operator
            access.
        on_ready: called once startup finished (``connectors serve`` prints its banner from it).

    Returns:
        The FastAPI application (run its lifespan: uvicorn does).

    Raises:
        ConfigurationError: invalid settings.
    """
    settings = settings or (hub.settings if hub is not None else Settings.from_env())
    config = config or ServerConfig.from_env()
    public_url = settings.public_url.rstrip("/")
    if embedded is None:
        embedded = hub is None and is_embedded_default(settings)
    options = EmbeddedOptions() if embedded is True else (embedded or None)
    sandbox: EmbeddedKustomer | None = None
    if options is not None:
        origins = tuple(dict.fromkeys([*twin_origins(public_url), *config.callback_origins]))
        config = config.with_changes(callback_origins=origins)
        sandbox = EmbeddedKustomer(options, public_url=public_url, callback_origins=origins)
    key = operator_key
    if key is None and settings.operator_key is not None:
        key = settings.operator_key.get_secret_value()
    if key is not None and len(key) < 16:
        from connectors.errors import ConfigurationError

        raise ConfigurationError("the operator key (CONNECTORS_OPERATOR_KEY) must be at least 16 characters")
    final_config = config

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = hub is None
        if hub is not None:
            the_hub = hub
        elif sandbox is not None:
            the_hub = Connectors(settings=sandbox.settings_for(settings), transport=sandbox.transport(), embedded=True)
        else:
            the_hub = Connectors(settings=settings)
        events: EventSource | None = None
        try:
            state = ServerState(
                hub=the_hub,
                config=final_config,
                sessions=SessionCodec(the_hub.store.secret_box.derive_key("session"), clock=the_hub.clock),
                operator_key=key,
                public_url=public_url,
                embedded=sandbox,
            )
            events = event_source_for(the_hub, queue_size=final_config.sse_queue_size)
            await events.start()
            state.events = events
            app.state.server = state
            if sandbox is not None:
                sandbox.deliver_webhooks_to(app)
                await sandbox.bootstrap(the_hub)
            if final_config.poll_interval > 0:
                await the_hub.webhooks.start_polling(interval=final_config.poll_interval)
            if on_ready is not None:
                result = on_ready(state)
                if result is not None:
                    await result
            yield
        finally:
            if final_config.poll_interval > 0 and the_hub.webhooks.polling:
                await the_hub.webhooks.stop_polling()
            if events is not None:
                await events.aclose()
            if own:
                await the_hub.aclose()

    app = FastAPI(
        title=config.title,
        version=__version__,
        description=_DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs" if config.docs else None,
        openapi_url="/openapi.json" if config.docs else None,
        redoc_url=None,
    )
    install_error_handlers(app)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=config.max_body_bytes)
    app.include_router(resource_routes.build_router())
    app.include_router(connections.build_router())
    app.include_router(proxy.build_router())
    app.include_router(webhooks.build_router())
    app.include_router(connect.build_router())
    app.add_api_route("/healthz", healthz, methods=["GET"], tags=["health"], summary="Liveness and store check")
    app.add_api_route("/", index, methods=["GET"], include_in_schema=False)
    static = resources.files("connectors.server").joinpath("static")
    app.mount("/connect/static", StaticFiles(directory=str(static)), name="connect-static")
    if sandbox is not None:
        app.mount(SANDBOX_PREFIX, sandbox.asgi, name="sandbox-kustomer")
    return app


async def healthz(request: Request) -> JSONResponse:
    """``200 {"status": "ok"}`` when the store answers; ``503`` otherwise."""
    state = server_state(request)
    hub = state.hub
    body: dict[str, Any] = {
        "status": "ok",
        "version": __version__,
        "pid": os.getpid(),
        "store": hub.store.dialect,
        "rateLimiter": "redis" if type(hub.limiter).__name__.lower().startswith("redis") else "in-process",
        "embedded": state.embedded is not None,
    }
    try:
        await anyio.to_thread.run_sync(hub.store.schema_version)
    except Exception as exc:  # any store failure means "not ready"
        body["status"] = "unavailable"
        body["reason"] = type(exc).__name__
        return JSONResponse(body, status_code=503)
    return JSONResponse(body)


async def index(request: Request) -> Response:
    """Browsers go to the Connect page; API clients get a map of the API."""
    if "text/html" in request.headers.get("accept", ""):
        return RedirectResponse("/connect", status_code=303)
    return JSONResponse(
        {
            "name": "unified-connectors",
            "version": __version__,
            "docs": "/docs",
            "connect": "/connect",
            "resources": "/resources/{model}",
            "health": "/healthz",
        }
    )
