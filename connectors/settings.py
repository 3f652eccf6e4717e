"""Deployment settings, read from the environment (``Settings.from_env()``) or given in code.

=================================  ============================================================
Environment variable               Meaning
=================================  ============================================================
``CONNECTORS_HOME``                directory of the embedded SQLite store and key file (``./.connectors``)
``CONNECTORS_DATABASE_URL``        SQLAlchemy URL of the store (``postgresql+psycopg://...``); SQLite default
``CONNECTORS_SECRET_KEY``          base64 32-byte key encrypting secrets at rest (see README)
``CONNECTORS_REDIS_URL``           Redis for the shared org rate budget across processes
``CONNECTORS_RATE_HEADROOM``       fraction of each rate budget kept unused, in (0, 1) (0.03)
``CONNECTORS_OPERATOR_KEY``        the host app's operator secret (``Authorization: Bearer ...``)
``CONNECTORS_PUBLIC_URL``          public base URL of the host app (OAuth redirect), ``http://localhost:8000``
``KUSTOMER_API_KEY``               a default Kustomer API key (the host app creates a connection with it)
``KUSTOMER_REGION``                ``us`` | ``eu`` | ``in``
``KUSTOMER_ORG``                   org subdomain (``acme`` -> ``acme.api.kustomerapp.com``)
``KUSTOMER_BASE_URL``              explicit API base URL (a sandbox or a proxy)
``KUSTOMER_CLIENT_ID``             OAuth client id (your Kustomer app)
``KUSTOMER_CLIENT_SECRET``         OAuth client secret
``KUSTOMER_OAUTH_AUTHORIZE_URL``   override of the authorization endpoint (``https://<org>.kustomerapp.com/oauth/authorize``)
``KUSTOMER_OAUTH_TOKEN_URL``       override of the token endpoint (``https://<org>.api.kustomerapp.com/oauth/token``)
``KUSTOMER_OAUTH_OFFLINE_ACCESS``  request ``offline_access`` (refresh tokens); ``true`` by default
``KUSTOMER_RATE_LIMIT``            org requests/minute assumed before Kustomer's header says (1000)
``KUSTOMER_SEARCH_LIMIT``          searches/minute (100 for API keys)
``KUSTOMER_RATE_WINDOW``           seconds of Kustomer's rate window (60; the sandbox can compress it)
``CONNECTORS_REFRESH_MARGIN``      refresh OAuth tokens this many seconds before expiry (300)
=================================  ============================================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from connectors.errors import ConfigurationError

__all__ = ["KustomerSettings", "Settings"]


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


class KustomerSettings(BaseModel):
    """Kustomer-specific settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    api_key: SecretStr | None = None
    region: str | None = None
    org: str | None = None
    base_url: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    authorize_url: str | None = None
    token_url: str | None = None
    offline_access: bool = True
    rate_limit: int = Field(default=1000, gt=0)
    search_limit: int = Field(default=100, gt=0)
    rate_window: float = Field(default=60.0, gt=0)

    @property
    def has_credentials(self) -> bool:
        """Whether a real Kustomer API key or OAuth client is configured."""
        return self.api_key is not None or self.client_id is not None


class Settings(BaseModel):
    """Everything a deployment configures. Secrets are ``SecretStr`` and never printed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    home: Path = Path(".connectors")
    database_url: str | None = None
    redis_url: str | None = None
    operator_key: SecretStr | None = None
    public_url: str = "http://localhost:8000"
    refresh_margin: float = Field(default=300.0, ge=0)
    rate_headroom: float = Field(default=0.03, gt=0, lt=1)
    kustomer: KustomerSettings = KustomerSettings()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read settings from environment variables (see the module docstring).

        Raises:
            ConfigurationError: a variable has an invalid value (names the variable, never the value).
        """
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(name)
            return value if value not in (None, "") else None

        kustomer: dict[str, Any] = {
            "api_key": get("KUSTOMER_API_KEY"),
            "region": get("KUSTOMER_REGION"),
            "org": get("KUSTOMER_ORG"),
            "base_url": get("KUSTOMER_BASE_URL"),
            "client_id": get("KUSTOMER_CLIENT_ID"),
            "client_secret": get("KUSTOMER_CLIENT_SECRET"),
            "authorize_url": get("KUSTOMER_OAUTH_AUTHORIZE_URL"),
            "token_url": get("KUSTOMER_OAUTH_TOKEN_URL"),
        }
        if (value := get("KUSTOMER_OAUTH_OFFLINE_ACCESS")) is not None:
            kustomer["offline_access"] = _truthy(value)
        for key, var in (
            ("rate_limit", "KUSTOMER_RATE_LIMIT"),
            ("search_limit", "KUSTOMER_SEARCH_LIMIT"),
            ("rate_window", "KUSTOMER_RATE_WINDOW"),
        ):
            if (value := get(var)) is not None:
                kustomer[key] = value
        data: dict[str, Any] = {
            "home": Path(get("CONNECTORS_HOME") or ".connectors"),
            "database_url": get("CONNECTORS_DATABASE_URL"),
            "redis_url": get("CONNECTORS_REDIS_URL"),
            "operator_key": get("CONNECTORS_OPERATOR_KEY"),
            "public_url": get("CONNECTORS_PUBLIC_URL") or "http://localhost:8000",
            "kustomer": {k: v for k, v in kustomer.items() if v is not None},
        }
        if (value := get("CONNECTORS_REFRESH_MARGIN")) is not None:
            data["refresh_margin"] = value
        if (value := get("CONNECTORS_RATE_HEADROOM")) is not None:
            data["rate_headroom"] = value
        data.update(overrides)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors(include_input=False)
            )
            raise ConfigurationError(f"invalid settings: {problems}") from None
