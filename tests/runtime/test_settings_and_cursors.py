"""Deployment settings from the environment, and the signed page cursors."""

from __future__ import annotations

import base64
import json

import pytest

from connectors import Settings
from connectors.errors import ConfigurationError, InvalidCursorError
from connectors.runtime.cursor import CursorCodec


def test_settings_from_the_environment() -> None:
    env = {
        "CONNECTORS_HOME": "/srv/connectors",
        "CONNECTORS_DATABASE_URL": "postgresql+psycopg://db/connectors",
        "CONNECTORS_REDIS_URL": "redis://cache:6379/0",
        "CONNECTORS_RATE_HEADROOM": "0.1",
        "CONNECTORS_REFRESH_MARGIN": "120",
        "KUSTOMER_REGION": "eu",
        "KUSTOMER_CLIENT_ID": "app",
        "KUSTOMER_CLIENT_SECRET": "SEKRET-client",
        "KUSTOMER_OAUTH_OFFLINE_ACCESS": "no",
        "KUSTOMER_RATE_LIMIT": "2000",
        "KUSTOMER_SEARCH_LIMIT": "100",
        "KUSTOMER_RATE_WINDOW": "2.5",
        "KUSTOMER_API_KEY": "",  # empty means unset
    }
    settings = Settings.from_env(env)
    assert str(settings.home) == "/srv/connectors" and settings.redis_url == "redis://cache:6379/0"
    assert (settings.rate_headroom, settings.refresh_margin) == (0.1, 120.0)
    ks = settings.kustomer
    assert (ks.region, ks.client_id, ks.offline_access, ks.rate_limit, ks.rate_window) == (
        "eu",
        "app",
        False,
        2000,
        2.5,
    )
    assert ks.api_key is None and ks.has_credentials
    assert "SEKRET" not in repr(settings) and "SEKRET" not in str(settings.model_dump())
    defaults = Settings.from_env({})
    assert (defaults.rate_headroom, defaults.kustomer.rate_window, defaults.refresh_margin) == (0.03, 60.0, 300.0)


@pytest.mark.parametrize(
    ("name", "value", "where"),
    [
        ("CONNECTORS_RATE_HEADROOM", "1.5", "rate_headroom"),
        ("CONNECTORS_RATE_HEADROOM", "0", "rate_headroom"),
        ("KUSTOMER_RATE_WINDOW", "-1", "kustomer.rate_window"),
        ("KUSTOMER_RATE_LIMIT", "lots", "kustomer.rate_limit"),
        ("CONNECTORS_REFRESH_MARGIN", "-5", "refresh_margin"),
    ],
)
def test_bad_settings_name_the_setting_not_the_value(name: str, value: str, where: str) -> None:
    with pytest.raises(ConfigurationError, match=where) as caught:
        Settings.from_env({name: value, "KUSTOMER_CLIENT_SECRET": "SEKRET-client"})
    if value != "0":  # "0" is in pydantic's own wording ("greater than 0")
        assert value not in str(caught.value)
    assert "SEKRET" not in str(caught.value)


def test_cursor_round_trip_and_scope() -> None:
    codec = CursorCodec.derive(b"k" * 32)
    cursor = codec.encode({"s": "genericContact:q1", "page": 3, "after": "2026-01-01T00:00:00Z"})
    assert codec.decode(cursor, scope="genericContact:q1")["page"] == 3
    assert CursorCodec.derive(b"k" * 32).decode(cursor)["after"] == "2026-01-01T00:00:00Z"  # every worker agrees
    with pytest.raises(InvalidCursorError, match="another model or query"):
        codec.decode(cursor, scope="genericCompany:q1")
    assert "k" * 8 not in repr(codec)


def test_edited_forged_and_malformed_cursors_are_refused() -> None:
    codec = CursorCodec.derive(b"k" * 32)
    cursor = codec.encode({"s": "m", "page": 3})
    body, tag = cursor.split(".")
    edited = base64.urlsafe_b64encode(json.dumps({"page": 99, "s": "m"}, separators=(",", ":")).encode()).decode()
    for bad in (f"{edited.rstrip('=')}.{tag}", f"{body}.{tag[:-2]}AA", "", "no-dot", "a.b.c", "!!!.???"):
        with pytest.raises(InvalidCursorError):
            codec.decode(bad)
    with pytest.raises(InvalidCursorError, match="signature"):
        CursorCodec.derive(b"other-deployment-key").decode(cursor)
    with pytest.raises(ValueError, match="16 bytes"):
        CursorCodec(b"short")
