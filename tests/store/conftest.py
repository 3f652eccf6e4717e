"""Fixtures of the connection-store tests.

``postgres_url`` is meant to move to the root conftest: it gives a URL to a fresh PostgreSQL schema for the
test session (dropped afterwards), skips when the server is unreachable, and fails instead when ``CI=true``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from connectors.runtime.secrets import SecretBox
from connectors.runtime.store import ConnectionStore


@pytest.fixture
def secret_key() -> bytes:
    return secrets.token_bytes(32)


@pytest.fixture
def box(secret_key: bytes) -> SecretBox:
    return SecretBox(secret_key)


def _wipe(store: ConnectionStore) -> None:
    from connectors.runtime.store import _table_names

    with store.engine.begin() as conn:
        for table in _table_names():
            if table != "connectors_schema_version":
                conn.execute(text(f"DELETE FROM {table}"))


BACKENDS = [
    pytest.param("memory", id="sqlite-memory"),
    pytest.param("file", id="sqlite-file"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path, box: SecretBox) -> Iterator[ConnectionStore]:
    """A store on every backend, empty at the start of the test."""
    kind = request.param
    if kind == "memory":
        url = "sqlite:///:memory:"
    elif kind == "file":
        url = f"sqlite:///{tmp_path / 'db' / 'connectors.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    with ConnectionStore(url, secret_box=box) as opened:
        _wipe(opened)
        yield opened
        _wipe(opened)


@pytest.fixture(params=[pytest.param("file", id="sqlite-file"), BACKENDS[2]])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL several stores (threads, processes) can share: a SQLite file or PostgreSQL, emptied."""
    if request.param == "file":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    url = request.getfixturevalue("postgres_url")
    assert isinstance(url, str)
    with ConnectionStore(url, secret_box=SecretBox(secrets.token_bytes(32))) as opened:
        _wipe(opened)
    return url
