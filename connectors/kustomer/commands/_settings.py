"""Per-org app settings (secrets) behind a provider protocol."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from pydantic import SecretStr

__all__ = ["AppSettingsProvider", "InMemoryAppSettings"]


class AppSettingsProvider(Protocol):
    """Looks up an org's app setting by key (``<app>.<category>.<value>``)."""

    async def get_setting(self, org_id: str, key: str) -> str | None:
        """Return the setting's value, or None when the org has not set it."""


class InMemoryAppSettings:
    """:class:`AppSettingsProvider` over a dict ``org -> {key: value}``; values never show in its repr.

    Args:
        settings: initial settings per org.
    """

    def __init__(self, settings: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self._settings: dict[str, dict[str, SecretStr]] = {}
        for org_id, values in (settings or {}).items():
            for key, value in values.items():
                self.set(org_id, key, value)

    def __repr__(self) -> str:
        keys = sorted({key for values in self._settings.values() for key in values})
        return f"InMemoryAppSettings(orgs={sorted(self._settings)}, keys={keys}, values='***')"

    def set(self, org_id: str, key: str, value: str) -> None:
        """Set (replace) one setting of one org."""
        self._settings.setdefault(org_id, {})[key] = SecretStr(value)

    def delete(self, org_id: str, key: str) -> None:
        """Remove one setting (no error when it is not set)."""
        self._settings.get(org_id, {}).pop(key, None)

    async def get_setting(self, org_id: str, key: str) -> str | None:
        """Return the setting's value, or None."""
        secret = self._settings.get(org_id, {}).get(key)
        return None if secret is None else secret.get_secret_value()
