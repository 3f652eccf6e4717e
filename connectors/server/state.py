"""What every route of the host app shares: the hub, the config, the session codec, the operator key."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection

from connectors.server.config import ServerConfig
from connectors.server.sessions import SessionCodec

if TYPE_CHECKING:
    from connectors.runtime.connection import Connectors
    from connectors.server.embedded import EmbeddedKustomer
    from connectors.server.events import EventSource

__all__ = ["ServerState", "server_state"]


@dataclass
class ServerState:
    """Shared state of one host-app process (nothing here differs between workers of a deployment).

    Attributes:
        hub: the connections hub.
        config: host-app settings.
        sessions: mints and verifies session tokens (key derived from the deployment key).
        operator_key: the operator secret, or ``None`` when operator access is off.
        public_url: the base URL browsers and Kustomer reach this app at (no trailing slash).
        embedded: the in-process sandbox of the embedded demo, when it runs.
        events: where ``GET /events`` reads (this process, or every worker through Redis).
        started_at: epoch seconds.
    """

    hub: Connectors
    config: ServerConfig
    sessions: SessionCodec
    operator_key: str | None
    public_url: str
    embedded: EmbeddedKustomer | None = None
    events: EventSource | None = None
    started_at: float = field(default_factory=time.time)

    def __repr__(self) -> str:
        return f"ServerState(public_url={self.public_url!r}, embedded={self.embedded is not None})"

    @property
    def callback_url(self) -> str:
        """The OAuth callback URL at the public URL."""
        return f"{self.public_url}/oauth/callback"

    @property
    def webhook_url(self) -> str:
        """Where Kustomer posts outbound webhooks (``POST /webhooks/kustomer``)."""
        return f"{self.public_url}/webhooks/kustomer"


def server_state(connection: HTTPConnection) -> ServerState:
    """The :class:`ServerState` of the app serving ``connection``.

    Raises:
        RuntimeError: the app has not started (its lifespan did not run).
    """
    state = getattr(connection.app.state, "server", None)
    if state is None:
        raise RuntimeError("the host app has not started (run it with its lifespan)")
    assert isinstance(state, ServerState)
    return state
