"""The host app (FastAPI) that ``connectors serve`` runs: unified REST API, connections, OAuth, proxy, webhooks.

::

    from connectors.server import create_app
    app = create_app()          # uvicorn module:app --factory, or connectors serve

See :mod:`connectors.server.app` for the routes, :mod:`connectors.server.security` for who may reach what, and
:mod:`connectors.server.run` for ``connectors serve``.
"""

from __future__ import annotations

from connectors.server.app import create_app
from connectors.server.config import ServerConfig
from connectors.server.embedded import EmbeddedOptions
from connectors.server.security import Principal
from connectors.server.sessions import SessionClaims, SessionCodec
from connectors.server.state import ServerState

__all__ = [
    "EmbeddedOptions",
    "Principal",
    "ServerConfig",
    "ServerState",
    "SessionClaims",
    "SessionCodec",
    "create_app",
]
