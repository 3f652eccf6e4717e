"""``connectors serve``: run the host app with uvicorn.

* **Embedded demo** (no ``KUSTOMER_API_KEY``, ``KUSTOMER_CLIENT_ID`` or ``KUSTOMER_BASE_URL``): SQLite store
  under ``CONNECTORS_HOME``, an in-process sandbox mounted at ``/sandbox-kustomer``, the owner ``demo``
  connected. Without ``CONNECTORS_OPERATOR_KEY`` an operator key is generated and printed, and requests with no
  ``Authorization`` header from this machine (loopback address and ``Host``) act as ``demo``, so
  ``curl localhost:8000/resources/genericContact`` just works. One worker.
* **Real Kustomer**: ``CONNECTORS_OPERATOR_KEY`` is required. With ``KUSTOMER_API_KEY`` set, the owner
  ``default`` is connected with it before the workers start. ``--workers N`` (N > 1) needs
  ``CONNECTORS_REDIS_URL`` (the org rate budget is shared through Redis) and a shared store
  (``CONNECTORS_DATABASE_URL``, PostgreSQL); every worker builds the app from the environment.

uvicorn's access log never shows the values of ``session``, ``code``, ``state`` or other secret-looking
query parameters.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import re
import secrets
import sys
from collections.abc import Mapping
from typing import Any, Final, TextIO

import uvicorn
from pydantic import SecretStr

from connectors.errors import ConfigurationError
from connectors.server.app import create_app
from connectors.server.config import ServerConfig
from connectors.server.embedded import is_embedded_default
from connectors.server.state import ServerState
from connectors.settings import Settings

__all__ = [
    "DEFAULT_OWNER",
    "DEMO_OWNER",
    "RedactQueryFilter",
    "banner",
    "create_app_from_env",
    "log_config",
    "redact_query",
    "serve",
]

DEMO_OWNER: Final = "demo"
DEFAULT_OWNER: Final = "default"
_SECRET_PARAMS: Final = re.compile(
    r"(?i)(^|[?&])((?:session|code|state|token|access_token|refresh_token|api_?key|key|secret|client_secret|"
    r"password)=)[^&#\s]*"
)
_LOOPBACK_BINDS: Final = frozenset({"127.0.0.1", "localhost", "0.0.0.0", "::", "::1", ""})  # noqa: S104


def redact_query(path: str) -> str:
    """``path`` with the values of secret-looking query parameters replaced by ``***``."""
    return _SECRET_PARAMS.sub(lambda m: f"{m.group(1)}{m.group(2)}***", path)


class RedactQueryFilter(logging.Filter):
    """Redacts secret query values in uvicorn access-log records (``args[2]`` is the path with query)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's path argument; always keep the record."""
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_query(args[2]), *args[3:])
        return True


def log_config() -> dict[str, Any]:
    """The uvicorn logging config with :class:`RedactQueryFilter` on the access log."""
    config: dict[str, Any] = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_query"] = {"()": "connectors.server.run.RedactQueryFilter"}
    config["handlers"]["access"]["filters"] = ["redact_query"]
    return config


def _public_url(host: str, port: int, env: Mapping[str, str]) -> str | None:
    if env.get("CONNECTORS_PUBLIC_URL", "").strip():
        return None
    name = "localhost" if host in _LOOPBACK_BINDS else (f"[{host}]" if ":" in host else host)
    return f"http://{name}:{port}"


def banner(state: ServerState, *, generated_key: str | None, out: TextIO | None = None) -> None:
    """Print where to go and a curl example (the operator key only when it was generated for this run)."""
    stream = out or sys.stdout
    url = state.public_url
    lines = [f"unified-connectors host app on {url}"]
    if state.embedded is not None:
        sb = state.embedded
        lines.append(
            f"  embedded demo: Kustomer sandbox at {sb.base_url} ({sb.options.customers} customers), "
            f"owner '{sb.options.owner_id}' connected"
        )
    lines += [f"  Connect page: {url}/connect", f"  API docs:     {url}/docs"]
    if state.config.loopback_owner is not None:
        lines.append(f"  try:  curl {url}/resources/genericContact?limit=3")
    if generated_key is not None:
        lines.append(f"  operator key (generated for this run): {generated_key}")
        lines.append(
            f'  as operator: curl -H "Authorization: Bearer {generated_key}" '
            f'-H "X-Connectors-Owner: {DEMO_OWNER}" {url}/resources/genericContact'
        )
    elif state.operator_key is not None:
        lines.append(
            '  as operator: curl -H "Authorization: Bearer $CONNECTORS_OPERATOR_KEY" '
            f'-H "X-Connectors-Owner: <owner>" {url}/resources/genericContact'
        )
    stream.write("\n".join(lines) + "\n")
    stream.flush()


async def _prepare(settings: Settings) -> None:
    """Open the store once before any worker starts, and connect ``default`` when ``KUSTOMER_API_KEY`` is set.

    Migrations run once, and a bad key or database URL fails here, in one clean line.
    """
    from connectors.runtime.connection import Connectors

    ks = settings.kustomer
    async with Connectors(settings=settings) as hub:
        if ks.api_key is None:
            return
        await hub.connect(
            "kustomer",
            DEFAULT_OWNER,
            api_key=ks.api_key.get_secret_value(),
            region=ks.region,
            org=ks.org,
            base_url=ks.base_url,
        )


def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 1, log_level: str = "info") -> None:
    """Run the host app until interrupted (see the module docstring).

    Args:
        host: interface to bind.
        port: TCP port.
        workers: worker processes (more than one needs Redis and a shared store).
        log_level: uvicorn log level.

    Raises:
        ConfigurationError: an impossible combination (the message says what to set).
    """
    if workers < 1:
        raise ConfigurationError("--workers must be at least 1")
    env = os.environ
    overrides: dict[str, Any] = {}
    public = _public_url(host, port, env)
    if public is not None:
        overrides["public_url"] = public
    settings = Settings.from_env(**overrides)
    embedded = is_embedded_default(settings)
    generated: str | None = None
    config = ServerConfig.from_env()
    if embedded:
        if workers > 1:
            raise ConfigurationError(
                "the embedded demo (no Kustomer configured) runs one worker: its sandbox lives in the process. "
                "For --workers N set KUSTOMER_BASE_URL or Kustomer credentials, CONNECTORS_DATABASE_URL "
                "(PostgreSQL) and CONNECTORS_REDIS_URL"
            )
        if settings.operator_key is None:
            generated = secrets.token_urlsafe(32)
            settings = settings.model_copy(update={"operator_key": SecretStr(generated)})
            config = config.with_changes(loopback_owner=DEMO_OWNER)
    else:
        if settings.operator_key is None:
            raise ConfigurationError(
                "set CONNECTORS_OPERATOR_KEY (a long random secret): the host app serves real Kustomer data"
            )
        if workers > 1 and not settings.redis_url:
            raise ConfigurationError(
                "--workers N needs CONNECTORS_REDIS_URL: the Kustomer rate budget must be shared by the workers"
            )
        if workers > 1 and not settings.database_url:
            raise ConfigurationError("--workers N needs a shared store: set CONNECTORS_DATABASE_URL (PostgreSQL)")
        asyncio.run(_prepare(settings))

    def ready(state: ServerState) -> None:
        banner(state, generated_key=generated)

    if workers == 1:
        app = create_app(settings=settings, config=config, embedded=embedded, on_ready=ready)
        uvicorn.run(app, host=host, port=port, log_level=log_level, log_config=log_config(), lifespan="on", ws="none")
        return
    if public is not None:
        os.environ["CONNECTORS_PUBLIC_URL"] = public
    sys.stdout.write(f"unified-connectors host app on {settings.public_url} with {workers} workers\n")
    sys.stdout.flush()
    uvicorn.run(
        "connectors.server.run:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        log_config=log_config(),
        lifespan="on",
        ws="none",
    )


def create_app_from_env() -> Any:
    """The app of one worker of ``serve --workers N``: everything from the environment, never embedded."""
    return create_app(settings=Settings.from_env(), config=ServerConfig.from_env(), embedded=False)
