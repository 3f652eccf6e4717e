"""Settings of the host app that are not deployment-wide (see :class:`connectors.settings.Settings` for those).

=================================  ============================================================
Environment variable               Meaning
=================================  ============================================================
``CONNECTORS_MAX_BODY_BYTES``      largest request body the host app reads (1 MiB); larger -> 413
``CONNECTORS_SESSION_TTL``         default lifetime of session tokens in seconds (900)
``CONNECTORS_SESSION_MAX_TTL``     longest lifetime a session token may be minted with (86400)
``CONNECTORS_RETURN_ORIGINS``      comma-separated origins an OAuth ``returnUrl`` may point at (besides the
                                   public URL's own origin)
``CONNECTORS_ALLOW_HTTP_SUBSCRIBERS``  accept ``http://`` webhook subscriber URLs (``https`` only by default)
``CONNECTORS_SSE_HEARTBEAT``       seconds between keep-alive comments on the event stream (15)
``CONNECTORS_POLL_INTERVAL``       seconds between virtual-webhook polls and outbox retries (60; 0 turns it off)
=================================  ============================================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from connectors.errors import ConfigurationError

__all__ = ["ServerConfig", "origin_of"]


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of an absolute URL, lower-cased (``""`` for a relative one)."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return ""
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """How the host app behaves.

    Attributes:
        max_body_bytes: largest request body read (larger -> 413 ``payload_too_large``).
        session_ttl_seconds: lifetime of a session token when ``POST /sessions`` does not say.
        session_max_ttl_seconds: longest lifetime ``POST /sessions`` accepts.
        loopback_owner: when set, requests **without** an ``Authorization`` header that come from a loopback
            address (with a loopback ``Host`` header and no foreign ``Origin``) act as this owner. Only the
            embedded demo turns it on, and only while no operator key is configured.
        default_connector: connector id used when a request does not name one.
        return_origins: extra origins an OAuth ``returnUrl`` may redirect to (the public URL's origin and
            relative paths are always allowed).
        callback_origins: origins the OAuth callback may be reached at; the Connect page uses the one the
            browser is on when it is listed here (so cookies keep working), else the public URL.
        allow_http_subscribers: accept ``http://`` webhook subscriber URLs.
        sse_heartbeat_seconds: seconds between keep-alive comments on ``GET /events``.
        sse_queue_size: events buffered per stream before the slowest consumer loses the oldest.
        poll_interval: seconds between rounds of virtual webhooks (companies, CRM objects, deletions) and of
            retries of failed webhook deliveries; ``0`` leaves polling to someone else.
        docs: serve the OpenAPI docs at ``/docs``.
        title: the OpenAPI title.
    """

    max_body_bytes: int = 1024 * 1024
    session_ttl_seconds: float = 900.0
    session_max_ttl_seconds: float = 86400.0
    loopback_owner: str | None = None
    default_connector: str = "kustomer"
    return_origins: tuple[str, ...] = ()
    callback_origins: tuple[str, ...] = ()
    allow_http_subscribers: bool = False
    sse_heartbeat_seconds: float = 15.0
    sse_queue_size: int = 1000
    poll_interval: float = 60.0
    docs: bool = True
    title: str = "unified-connectors"

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1:
            raise ConfigurationError("max_body_bytes must be at least 1")
        if not 0 < self.session_ttl_seconds <= self.session_max_ttl_seconds:
            raise ConfigurationError("session_ttl_seconds must be positive and at most session_max_ttl_seconds")
        if self.sse_heartbeat_seconds <= 0:
            raise ConfigurationError("sse_heartbeat_seconds must be positive")
        if self.poll_interval < 0:
            raise ConfigurationError("poll_interval must be 0 (off) or positive")
        if self.sse_queue_size < 1:
            raise ConfigurationError("sse_queue_size must be at least 1")
        for origin in (*self.return_origins, *self.callback_origins):
            if origin_of(origin) != origin.lower().rstrip("/"):
                raise ConfigurationError(f"{origin!r} is not an origin (scheme://host[:port])")

    def with_changes(self, **changes: Any) -> ServerConfig:
        """A copy with some attributes replaced (validated again)."""
        return replace(self, **changes)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ServerConfig:
        """Read the variables of the module docstring; ``overrides`` win.

        Raises:
            ConfigurationError: a variable has an invalid value (names the variable).
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {}

        def number(var: str, key: str, kind: type[int] | type[float]) -> None:
            raw = env.get(var, "").strip()
            if raw:
                try:
                    values[key] = kind(raw)
                except ValueError:
                    raise ConfigurationError(f"{var} must be a number") from None

        number("CONNECTORS_MAX_BODY_BYTES", "max_body_bytes", int)
        number("CONNECTORS_SESSION_TTL", "session_ttl_seconds", float)
        number("CONNECTORS_SESSION_MAX_TTL", "session_max_ttl_seconds", float)
        number("CONNECTORS_SSE_HEARTBEAT", "sse_heartbeat_seconds", float)
        number("CONNECTORS_POLL_INTERVAL", "poll_interval", float)
        origins = env.get("CONNECTORS_RETURN_ORIGINS", "").strip()
        if origins:
            values["return_origins"] = tuple(o.strip().rstrip("/").lower() for o in origins.split(",") if o.strip())
        allow_http = env.get("CONNECTORS_ALLOW_HTTP_SUBSCRIBERS", "").strip().lower()
        if allow_http:
            values["allow_http_subscribers"] = allow_http in ("1", "true", "yes", "on")
        values.update(overrides)
        return cls(**values)
