"""The embedded default of ``connectors serve``: a seeded in-process Kustomer sandbox and a ready demo owner.

When no Kustomer credentials are configured (no ``KUSTOMER_API_KEY``, ``KUSTOMER_CLIENT_ID`` or
``KUSTOMER_BASE_URL``), the host app:

* builds a :class:`~connectors.kustomer.sandbox.Sandbox` (a few thousand customers, deterministic seed) and
  mounts it at ``/sandbox-kustomer`` on the same port, so a browser reaches its OAuth consent page; the host
  app's own calls go to it in process (no socket);
* registers an OAuth client in it for the Connect page (redirect URIs: the public URL's callback and its
  ``127.0.0.1``/``localhost`` twin), and configures the hub with it;
* connects the demo owner (``demo``) with a freshly minted all-roles API key, provisions the CRM Klasses and
  seeds a small sales pipeline (:mod:`connectors.kustomer.provision`);
* drops connections left over from a previous run's sandbox (its keys died with it);
* delivers the sandbox's outbound webhooks straight into the app's ``POST /webhooks/kustomer``.

The sandbox's admin routes are closed (a random admin token) so a browser cannot reset or mint keys in it.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import httpx
from pydantic import SecretStr
from starlette.types import ASGIApp, Receive, Scope, Send

from connectors.kustomer.sandbox import Sandbox, SandboxSettings
from connectors.kustomer.sandbox.transport import SandboxTransport
from connectors.server.config import origin_of
from connectors.settings import Settings

if TYPE_CHECKING:
    from connectors.runtime.connection import Connection, Connectors

__all__ = [
    "DEMO_OAUTH_CLIENT_ID",
    "SANDBOX_PREFIX",
    "EmbeddedKustomer",
    "EmbeddedOptions",
    "PrefixStripper",
    "is_embedded_default",
    "twin_origins",
]

logger = logging.getLogger(__name__)

SANDBOX_PREFIX: Final = "/sandbox-kustomer"
DEMO_OAUTH_CLIENT_ID: Final = "unified-connectors-demo"


def is_embedded_default(settings: Settings) -> bool:
    """Whether ``settings`` configure no Kustomer at all (then ``serve`` runs the embedded demo)."""
    ks = settings.kustomer
    return not ks.has_credentials and not ks.base_url


def twin_origins(public_url: str) -> tuple[str, ...]:
    """The public origin and, for a loopback one, its ``localhost``/``127.0.0.1`` twin."""
    origin = origin_of(public_url)
    scheme, _, rest = origin.partition("://")
    host, sep, port = rest.rpartition(":") if rest.count(":") == 1 else (rest, "", "")
    twins = [origin]
    swap = {"localhost": "127.0.0.1", "127.0.0.1": "localhost"}.get(host)
    if swap is not None:
        twins.append(f"{scheme}://{swap}{sep}{port}")
    return tuple(twins)


@dataclass(frozen=True, slots=True)
class EmbeddedOptions:
    """How big the demo is.

    Attributes:
        customers: seeded customers.
        companies: seeded companies.
        users: seeded users.
        teams: seeded teams.
        seed: random seed (the data is the same on every run).
        owner_id: the demo owner.
        provision_crm: provision the CRM Klasses and seed a sample pipeline.
    """

    customers: int = 3000
    companies: int = 150
    users: int = 12
    teams: int = 4
    seed: int = 42
    owner_id: str = "demo"
    provision_crm: bool = True


class PrefixStripper:
    """Serve an ASGI app under a path prefix it does not know about (strips it from ``path``/``raw_path``).

    Args:
        app: the app (the sandbox).
        prefix: the prefix (``/sandbox-kustomer``).
    """

    def __init__(self, app: ASGIApp, prefix: str) -> None:
        self.app = app
        self.prefix = prefix.rstrip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Forward one request with the prefix removed."""
        if scope["type"] in ("http", "websocket"):
            path: str = scope["path"]
            if path.startswith(self.prefix):
                path = path[len(self.prefix) :] or "/"
            raw: bytes | None = scope.get("raw_path")
            if raw is not None and raw.startswith(self.prefix.encode()):
                raw = raw[len(self.prefix) :] or b"/"
            scope = {**scope, "path": path, "raw_path": raw, "root_path": ""}
        await self.app(scope, receive, send)


class EmbeddedKustomer:
    """The in-process Kustomer of the embedded demo.

    Args:
        options: data sizes and the demo owner.
        public_url: the host app's public URL (the sandbox lives at ``<public_url>/sandbox-kustomer``).
        callback_origins: origins whose ``/oauth/callback`` the demo OAuth client accepts.
    """

    def __init__(self, options: EmbeddedOptions, *, public_url: str, callback_origins: Sequence[str]) -> None:
        self.options = options
        self.base_url = public_url.rstrip("/") + SANDBOX_PREFIX
        self.sandbox = Sandbox(
            SandboxSettings(
                customers=options.customers,
                companies=options.companies,
                users=options.users,
                teams=options.teams,
                seed=options.seed,
                org_name="demo",
                admin_token=secrets.token_urlsafe(24),
            ),
            base_url=self.base_url,
        )
        self.asgi = PrefixStripper(self.sandbox.app, SANDBOX_PREFIX)
        self.client_id = DEMO_OAUTH_CLIENT_ID
        self._client_secret = secrets.token_urlsafe(32)
        self.redirect_uris = tuple(f"{o}/oauth/callback" for o in dict.fromkeys(callback_origins))
        self.sandbox.register_oauth_client(self.client_id, self._client_secret, self.redirect_uris)

    def __repr__(self) -> str:
        return f"EmbeddedKustomer(base_url={self.base_url!r}, customers={self.options.customers})"

    def transport(self) -> httpx.AsyncBaseTransport:
        """The in-process transport the hub sends every Kustomer call through."""
        return SandboxTransport(self.asgi)

    def settings_for(self, settings: Settings) -> Settings:
        """``settings`` pointed at the sandbox, with the demo OAuth client."""
        kustomer = settings.kustomer.model_copy(
            update={
                "base_url": self.base_url,
                "client_id": self.client_id,
                "client_secret": SecretStr(self._client_secret),
                "authorize_url": None,
                "token_url": None,
            }
        )
        return settings.model_copy(update={"kustomer": kustomer})

    def deliver_webhooks_to(self, app: ASGIApp) -> None:
        """Deliver the sandbox's outbound webhooks to ``app`` in process."""
        self.sandbox.webhook_transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50001))

    async def bootstrap(self, hub: Connectors) -> Connection:
        """Drop stale sandbox connections, connect the demo owner, provision and seed the CRM data."""
        for info in await hub.list():
            if info.base_url and info.base_url.rstrip("/").endswith(SANDBOX_PREFIX):
                await hub.disconnect(info.connector_id, info.owner_id, info.label)
                logger.info("dropped connection %s of a previous embedded sandbox", info.id)
        key = self.sandbox.mint_api_key(name="embedded demo")
        connection = await hub.connect("kustomer", self.options.owner_id, api_key=key, base_url=self.base_url)
        if self.options.provision_crm:
            await _provision(connection)
        return connection


async def _provision(connection: Connection) -> dict[str, Any]:
    try:
        from connectors.kustomer.provision import provision_crm, seed_demo_crm
    except ImportError:  # pragma: no cover - the provisioning module ships with the package
        logger.warning("connectors.kustomer.provision is not available: the demo has no CRM data")
        return {}
    report = await provision_crm(connection)
    seeded = await seed_demo_crm(connection)
    logger.info("embedded demo: %s; seeded %s", "; ".join(report.lines()), seeded)
    return dict(seeded)
