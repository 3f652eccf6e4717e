"""The connection store: connections, their encrypted credentials, OAuth state, webhook dedupe and watermarks.

One SQL schema (SQLAlchemy Core) serves both backends:

* **SQLite** (the embedded default, ``./.connectors/connectors.db`` or ``$CONNECTORS_HOME/connectors.db``):
  WAL journal, a busy timeout so concurrent processes *wait* for the write lock instead of failing, and
  SQLAlchemy's documented pysqlite recipe so that the store emits ``BEGIN`` itself (``BEGIN IMMEDIATE`` for
  writes). ``sqlite:///:memory:`` works too (one shared connection, serialised by an in-process lock).
* **PostgreSQL** (``CONNECTORS_DATABASE_URL=postgresql+psycopg://...``) for many processes or machines: row
  locks, ``INSERT ... ON CONFLICT`` and a transaction-scoped advisory lock around migrations.

Credentials are stored only as AES-GCM ciphertext (:class:`~connectors.runtime.secrets.SecretBox`), each bound
to its row and column, and are decrypted into a :class:`~connectors.runtime.secrets.Secrets` whose ``repr``
redacts them. No other column ever holds a secret.

Token refresh is serialised across threads, tasks and processes with :meth:`ConnectionStore.refresh_lock`:
on PostgreSQL a ``SELECT ... FOR UPDATE`` of the connection row, on SQLite a ``BEGIN IMMEDIATE`` write
transaction (which locks the whole database file while held, so keep the critical section short). Inside
the lock the row is re-read, and tokens are written with a compare-and-swap on ``token_version``. Callers add
their own in-process single-flight on top so that only one task per process even waits for the lock.

Inside ``refresh_lock`` use only the :class:`LockedConnection`; calling other writing methods of the store
from the same task would wait for the lock that task holds.

The schema is created on first use and migrated by an ordered list of steps recorded in
``connectors_schema_version`` (see :data:`MIGRATIONS`).
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from types import EllipsisType, TracebackType
from typing import Any, Final, Literal, NoReturn, TypedDict, Unpack, get_args

from sqlalchemy import (
    URL,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Double,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Dialect, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.expression import Executable
from sqlalchemy.types import TypeDecorator

from connectors.errors import ConfigurationError, NotConnectedError, OAuthFlowError, StoreConflictError
from connectors.runtime.secrets import SecretBox, Secrets, load_old_secret_keys, load_secret_key

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "CommitResult",
    "ConnectionChanges",
    "ConnectionRecord",
    "ConnectionStatus",
    "ConnectionStore",
    "EventCandidate",
    "LockedConnection",
    "Migration",
    "OutboxRecord",
    "OutboxRow",
    "RemoteWebhookRef",
    "VersionCheck",
    "WatermarkSwap",
    "WebhookEndpointRecord",
    "WebhookSubscriberRecord",
    "WebhookSubscriptionRecord",
]

logger = logging.getLogger(__name__)

ConnectionStatus = Literal["pending", "active", "needs_reauth", "disabled"]
_AuthType = Literal["api_key", "oauth2"]
_STATUSES: Final = frozenset(get_args(ConnectionStatus))
_AUTH_TYPES: Final = frozenset(get_args(_AuthType))

DATABASE_URL_ENV_VAR: Final = "CONNECTORS_DATABASE_URL"
HOME_ENV_VAR: Final = "CONNECTORS_HOME"
DEFAULT_HOME: Final = ".connectors"
DB_FILE_NAME: Final = "connectors.db"
KEY_FILE_NAME: Final = "secret.key"

_SQLITE_BEGIN_OPTION: Final = "connectors_sqlite_begin"
_PG_MIGRATION_LOCK_KEY: Final = 0x636F6E6E  # "conn": serialises schema migrations of concurrent workers
_MAX_PURGE_SCOPES: Final = 1024


# --------------------------------------------------------------------------------------------------------
# Column types


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class _JSONText(TypeDecorator[Any]):
    """JSON kept as canonical text: identical on both backends and comparable by equality (CAS)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else _canonical_json(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else json.loads(value)


class _UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both backends (SQLite stores them naive)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the connection store; use an aware UTC datetime")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# --------------------------------------------------------------------------------------------------------
# Schema

_metadata = MetaData()

_schema_version = Table(
    "connectors_schema_version",
    _metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", Text, nullable=False),
    Column("applied_at", _UTCDateTime(timezone=True), nullable=False),
)

_connections = Table(
    "connectors_connections",
    _metadata,
    Column("id", String(32), primary_key=True),
    Column("connector_id", Text, nullable=False),
    Column("owner_id", Text, nullable=False),
    Column("label", Text, nullable=False),
    Column("auth_type", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("status_reason", Text, nullable=True),
    Column("region", Text, nullable=True),
    Column("org", Text, nullable=True),
    Column("base_url", Text, nullable=True),
    Column("operations", _JSONText, nullable=False),
    Column("granted_roles", _JSONText, nullable=True),
    Column("settings", _JSONText, nullable=False),
    Column("metadata", _JSONText, nullable=False),
    Column("secrets_ciphertext", Text, nullable=False),  # the ONLY place credentials live (encrypted)
    Column("token_version", BigInteger, nullable=False),
    Column("access_expires_at", Double, nullable=True),
    Column("created_at", _UTCDateTime(timezone=True), nullable=False),
    Column("updated_at", _UTCDateTime(timezone=True), nullable=False),
    Index("ux_connectors_connections_key", "connector_id", "owner_id", "label", unique=True),
    Index("ix_connectors_connections_owner", "owner_id"),
)

_oauth_states = Table(
    "connectors_oauth_states",
    _metadata,
    Column("state_hash", Text, primary_key=True),
    Column("payload_ciphertext", Text, nullable=False),  # may hold a PKCE verifier: encrypted
    Column("expires_at", Double, nullable=False),
    Index("ix_connectors_oauth_states_expires", "expires_at"),
)

_seen_events = Table(
    "connectors_seen_events",
    _metadata,
    Column("scope", Text, primary_key=True),
    Column("event_key", Text, primary_key=True),
    Column("seen_at", Double, nullable=False),
    Index("ix_connectors_seen_events_age", "scope", "seen_at"),
)

_watermarks = Table(
    "connectors_watermarks",
    _metadata,
    Column("scope", Text, primary_key=True),
    Column("value", _JSONText, nullable=False),
    Column("updated_at", _UTCDateTime(timezone=True), nullable=False),
)

_secrets = Table(
    "connectors_secrets",
    _metadata,
    Column("scope", Text, primary_key=True),
    Column("name", Text, primary_key=True),
    Column("ciphertext", Text, nullable=False),
    Column("updated_at", _UTCDateTime(timezone=True), nullable=False),
)

# -- webhooks (schema version 2) ----------------------------------------------------------------------------

_webhook_endpoints = Table(
    "connectors_webhook_endpoints",
    _metadata,
    Column("id", String(64), primary_key=True),
    Column("connector_id", Text, nullable=False),
    Column("org_key", Text, nullable=False),
    Column("url", Text, nullable=False),
    Column("remotes", _JSONText, nullable=False),  # [{"id": <provider webhook id>, "events": [...]}]; tokens: secrets
    Column("version", BigInteger, nullable=False),
    Column("created_at", _UTCDateTime(timezone=True), nullable=False),
    Column("updated_at", _UTCDateTime(timezone=True), nullable=False),
    Index("ix_connectors_webhook_endpoints_org", "connector_id", "org_key"),
)

_webhook_subscriptions = Table(
    "connectors_webhook_subscriptions",
    _metadata,
    Column("connection_id", String(32), primary_key=True),
    Column("event", Text, primary_key=True),
    Column("connector_id", Text, nullable=False),
    Column("owner_id", Text, nullable=False),
    Column("org_key", Text, nullable=False),
    Column("native", Boolean, nullable=False),
    Column("endpoint_id", String(64), nullable=True),
    Column("created_at", _UTCDateTime(timezone=True), nullable=False),
    Index("ix_connectors_webhook_subscriptions_org", "connector_id", "org_key", "event"),
    Index("ix_connectors_webhook_subscriptions_endpoint", "endpoint_id"),
)

_webhook_subscribers = Table(
    "connectors_webhook_subscribers",
    _metadata,
    Column("id", String(32), primary_key=True),
    Column("owner_id", Text, nullable=False),
    Column("url", Text, nullable=False),
    Column("events", _JSONText, nullable=False),  # the signing secret lives in connectors_secrets, encrypted
    Column("created_at", _UTCDateTime(timezone=True), nullable=False),
    Index("ix_connectors_webhook_subscribers_owner", "owner_id"),
)

_object_versions = Table(
    "connectors_object_versions",
    _metadata,
    Column("scope", Text, primary_key=True),
    Column("object_key", Text, primary_key=True),
    Column("version", Text, nullable=False),
    Column("seen_at", Double, nullable=False),
    Index("ix_connectors_object_versions_age", "scope", "seen_at"),
)

_poll_known = Table(
    "connectors_poll_known",
    _metadata,
    Column("scope", Text, primary_key=True),
    Column("object_key", Text, primary_key=True),
    Column("version", Text, nullable=True),
)

_event_outbox = Table(
    "connectors_event_outbox",
    _metadata,
    Column("id", String(32), primary_key=True),
    Column("target", Text, nullable=False),  # "local" (in-process handlers) or a subscriber id (forwarding)
    Column("owner_id", Text, nullable=True),
    Column("payload", _JSONText, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("status", String(8), nullable=False),  # pending | dead
    Column("available_at", Double, nullable=False),
    Column("lease_until", Double, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("created_at", Double, nullable=False),
    Index("ix_connectors_event_outbox_due", "status", "available_at"),
)

_leases = Table(
    "connectors_leases",
    _metadata,
    Column("name", Text, primary_key=True),
    Column("holder", Text, nullable=False),
    Column("expires_at", Double, nullable=False),
)

_WEBHOOK_TABLES: Final = (
    _webhook_endpoints,
    _webhook_subscriptions,
    _webhook_subscribers,
    _object_versions,
    _poll_known,
    _event_outbox,
    _leases,
)


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step.

    Attributes:
        version: the schema version this step produces (1, 2, 3, ... without gaps).
        description: what it does (recorded in ``connectors_schema_version``).
        apply: runs the DDL on a connection inside the migration transaction.
    """

    version: int
    description: str
    apply: Callable[[Connection], None]


def _create_tables(conn: Connection) -> None:
    _metadata.create_all(conn, checkfirst=True)


def _create_webhook_tables(conn: Connection) -> None:
    for table in _WEBHOOK_TABLES:
        table.create(conn, checkfirst=True)


MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(1, "create tables", _create_tables),
    Migration(
        2,
        "webhook endpoints, subscriptions, subscribers, object versions, poll state, outbox, leases",
        _create_webhook_tables,
    ),
)
"""Ordered schema steps.

Step 1 creates the tables in their *current* shape, so a fresh database runs only step 1 and is stamped with
every version. Later steps run only on databases an older release created, and are written against the
previous shape, e.g. ``Migration(3, "add connections.scopes", lambda c: c.execute(text(
"ALTER TABLE connectors_connections ADD COLUMN scopes TEXT")))`` together with the new ``Column`` above.

Step 2 adds the webhook tables (endpoints, subscriptions, subscribers, object versions, poll state, the event
outbox and leases). It creates them from the ``Table`` objects above; should a later step alter one of them,
pin step 2 to a copy of its version-2 definition first.
"""

SCHEMA_VERSION: Final = MIGRATIONS[-1].version


# --------------------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True, kw_only=True, slots=True)
class ConnectionRecord:
    """One stored connection with its decrypted credentials (``repr`` redacts them).

    Attributes:
        id: uuid4 hex, stable across reconnects.
        connector_id: the connector (``kustomer``).
        owner_id: the tenant that owns the connection.
        label: distinguishes several connections of one owner to one connector (``""`` by default).
        auth_type: ``api_key`` or ``oauth2``.
        status: ``pending``, ``active``, ``needs_reauth`` or ``disabled``.
        region: provider region (Kustomer pod), when known.
        org: the provider org subdomain/name, when known.
        base_url: API base URL override, when set.
        operations: the operations the owner selected.
        granted_roles: the roles the credential was granted, ``None`` when unknown.
        settings: connector settings and field mappings (never secrets).
        metadata: identity facts (org id, user id, ...), never secrets.
        secrets: the credentials.
        token_version: bumped on every credential write (the refresh compare-and-swap version).
        access_expires_at: access-token expiry in epoch seconds, ``None`` when it does not expire/unknown.
        status_reason: why the status is what it is (e.g. the refresh failure), when set.
        created_at: first connection (UTC).
        updated_at: last change (UTC).
    """

    id: str
    connector_id: str
    owner_id: str
    label: str = ""
    auth_type: _AuthType
    status: ConnectionStatus
    region: str | None
    org: str | None
    base_url: str | None
    operations: tuple[str, ...]
    granted_roles: tuple[str, ...] | None
    settings: dict[str, Any]
    metadata: dict[str, Any]
    secrets: Secrets
    token_version: int
    access_expires_at: float | None
    status_reason: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class RemoteWebhookRef:
    """One provider webhook an endpoint uses (its signing token is a secret in the store).

    Attributes:
        id: the provider's webhook id.
        events: the provider events it subscribes to.
    """

    id: str
    events: tuple[str, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class WebhookEndpointRecord:
    """The provider webhooks one receive URL uses for one provider org, shared by that org's connections.

    Attributes:
        id: derived from ``(connector_id, org_key, url)``.
        connector_id: the connector.
        org_key: the provider org (Kustomer org id).
        url: where the provider delivers.
        remotes: the provider webhooks (more than one only when the events exceed one webhook's limit).
        version: bumped on every write (compare-and-swap).
        created_at: first write (UTC).
        updated_at: last write (UTC).
    """

    id: str
    connector_id: str
    org_key: str
    url: str
    remotes: tuple[RemoteWebhookRef, ...]
    version: int
    created_at: datetime
    updated_at: datetime

    @property
    def events(self) -> frozenset[str]:
        """Every provider event the endpoint's webhooks subscribe to."""
        return frozenset(e for remote in self.remotes for e in remote.events)


@dataclass(frozen=True, kw_only=True, slots=True)
class WebhookSubscriptionRecord:
    """One connection's subscription to one unified event (``genericContact::created``).

    Attributes:
        connection_id: the subscribing connection.
        event: ``<model>::<trigger>``.
        connector_id: the connection's connector.
        owner_id: the connection's owner (events are emitted per owner).
        org_key: the provider org (routing key of deliveries).
        native: pushed by a provider webhook (``True``) or polled (a virtual webhook).
        endpoint_id: the :class:`WebhookEndpointRecord` of a native subscription.
        created_at: when first subscribed (UTC).
    """

    connection_id: str
    event: str
    connector_id: str
    owner_id: str
    org_key: str
    native: bool
    endpoint_id: str | None
    created_at: datetime


@dataclass(frozen=True, kw_only=True, slots=True)
class WebhookSubscriberRecord:
    """A forwarding target of one owner (its signing secret is a secret in the store).

    Attributes:
        id: uuid4 hex.
        owner_id: whose events it receives.
        url: where events are POSTed.
        events: event patterns (``genericContact::*``, ``*``).
        created_at: when added (UTC).
    """

    id: str
    owner_id: str
    url: str
    events: tuple[str, ...]
    created_at: datetime


@dataclass(frozen=True, kw_only=True, slots=True)
class OutboxRow:
    """An event to deliver, as written by :meth:`ConnectionStore.commit_events`.

    Attributes:
        id: unique id (uuid4 hex).
        target: ``"local"`` (the in-process handlers of whichever process claims it) or a subscriber id.
        owner_id: the owner the event belongs to.
        payload: the event (JSON-serialisable).
        available_at: epoch seconds from which it may be delivered.
    """

    id: str
    target: str
    owner_id: str | None
    payload: Mapping[str, Any]
    available_at: float


@dataclass(frozen=True, kw_only=True, slots=True)
class OutboxRecord:
    """A stored outbox row.

    Attributes:
        id: the row id.
        target: ``"local"`` or a subscriber id.
        owner_id: the event's owner.
        payload: the event.
        attempts: failed delivery attempts so far.
        status: ``pending`` or ``dead`` (gave up).
        available_at: epoch seconds of the next attempt.
        last_error: why the last attempt failed (never holds secrets).
        created_at: epoch seconds.
    """

    id: str
    target: str
    owner_id: str | None
    payload: dict[str, Any]
    attempts: int
    status: str
    available_at: float
    last_error: str | None
    created_at: float


@dataclass(frozen=True, slots=True)
class VersionCheck:
    """The version of the object an event is about, for dropping stale updates.

    Versions compare as strings (callers make them sortable, e.g. zero-padded timestamps; ``"~"`` sorts after
    every digit, a tombstone).

    Attributes:
        scope: the namespace (e.g. ``kustomer:<owner>``).
        key: the object (e.g. ``genericContact:<id>``).
        version: this event's version.
        drop_if_older: drop the event when a newer version was already recorded (updates); otherwise only
            record the version (creations, deletions).
    """

    scope: str
    key: str
    version: str
    drop_if_older: bool


@dataclass(frozen=True, slots=True)
class EventCandidate:
    """Outbox rows to write unless their version check finds them stale."""

    rows: tuple[OutboxRow, ...]
    version: VersionCheck | None = None


@dataclass(frozen=True, slots=True)
class WatermarkSwap:
    """A compare-and-swap of a watermark done in the same transaction as the events it covers.

    Attributes:
        scope: the watermark.
        expected: its current value, ``None`` when none is stored yet.
        value: the new value.
    """

    scope: str
    expected: Mapping[str, Any] | None
    value: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class CommitResult:
    """What :meth:`ConnectionStore.commit_events` did.

    Attributes:
        duplicate: the dedupe key was already seen: nothing was written.
        swapped: the watermark compare-and-swap succeeded (``True`` when none was asked for); when ``False``
            nothing was written.
        accepted: per candidate, whether its rows were written (``False``: stale, or nothing written).
    """

    duplicate: bool
    swapped: bool
    accepted: tuple[bool, ...]

    @property
    def written(self) -> bool:
        """Whether the transaction wrote the events."""
        return self.swapped and not self.duplicate


class _Abort(Exception):
    """Rolls a :meth:`ConnectionStore.commit_events` transaction back."""


def _abort(reason: str) -> NoReturn:
    raise _Abort(reason)


class ConnectionChanges(TypedDict, total=False):
    """The fields :meth:`ConnectionStore.update` may change (credentials change only under the lock)."""

    status: ConnectionStatus
    status_reason: str | None
    granted_roles: Sequence[str] | None
    operations: Sequence[str]
    settings: Mapping[str, Any]
    metadata: Mapping[str, Any]
    region: str | None
    org: str | None
    base_url: str | None


_UPDATABLE: Final = frozenset(ConnectionChanges.__annotations__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _aad(*parts: str) -> str:
    """Associated data naming a ciphertext's location, unambiguous whatever the parts contain."""
    return json.dumps(parts, separators=(",", ":"))


def _connection_aad(connection_id: str) -> str:
    return _aad("connection", connection_id, "secrets")


def _subscriber_secret(subscriber_id: str) -> tuple[str, str]:
    """Where a forwarding target's signing secret lives in ``connectors_secrets``."""
    return f"webhook-subscriber:{subscriber_id}", "secret"


def _str_tuple(name: str, values: Iterable[str]) -> tuple[str, ...]:
    if isinstance(values, str):
        raise TypeError(f"{name} must be a sequence of strings, not a string")
    out = tuple(values)
    if not all(isinstance(v, str) for v in out):
        raise TypeError(f"{name} must contain only strings")
    return out


def _json_dict(name: str, value: Mapping[str, Any] | None) -> dict[str, Any]:
    out = dict(value or {})
    try:
        _canonical_json(out)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be JSON-serialisable (str keys; str/number/bool/None/list/dict)") from None
    return out


def _check_status(status: str) -> None:
    if status not in _STATUSES:
        raise ValueError(f"unknown connection status {status!r}; expected one of {sorted(_STATUSES)}")


# --------------------------------------------------------------------------------------------------------
# Engine set-up


def _normalise_url(url: str | URL) -> URL:
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database.startswith("~"):
        parsed = parsed.set(database=str(Path(parsed.database).expanduser()))
    return parsed


def _is_memory_sqlite(url: URL) -> bool:
    return url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"


def _on_sqlite_connect(*, wal: bool) -> Callable[[Any, Any], None]:
    def listener(dbapi_connection: Any, connection_record: Any) -> None:
        # SQLAlchemy's pysqlite recipe: stop sqlite3 from emitting BEGIN; _on_sqlite_begin emits it.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if wal:
                # Readers never block the writer; synchronous stays FULL (the default) because a rotated
                # refresh token lost on power failure would strand the connection.
                cursor.execute("PRAGMA journal_mode=WAL")
        finally:
            cursor.close()

    return listener


def _on_sqlite_begin(conn: Connection) -> None:
    mode = conn.get_execution_options().get(_SQLITE_BEGIN_OPTION, "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


def _on_pg_connect(lock_timeout_ms: int) -> Callable[[Any, Any], None]:
    def listener(dbapi_connection: Any, connection_record: Any) -> None:
        # Row locks (refresh_lock) and writes waiting on them give up after the same time as SQLite's busy
        # timeout instead of waiting forever.
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET lock_timeout = {lock_timeout_ms}")
        dbapi_connection.commit()

    return listener


def _is_lock_error(exc: DBAPIError) -> bool:
    orig = exc.orig
    if isinstance(orig, sqlite3.OperationalError):
        message = str(orig).lower()
        return "locked" in message or "busy" in message
    return getattr(orig, "sqlstate", None) in ("55P03", "40P01")  # lock_not_available, deadlock_detected


# --------------------------------------------------------------------------------------------------------
# The store


class LockedConnection:
    """A connection row held under :meth:`ConnectionStore.refresh_lock`.

    Attributes:
        record: the row as re-read after the lock was taken (updated by the writes below).
    """

    __slots__ = ("_conn", "_open", "_store", "record")

    def __init__(self, store: ConnectionStore, conn: Connection, record: ConnectionRecord) -> None:
        self._store = store
        self._conn = conn
        self._open = True
        self.record = record

    def __repr__(self) -> str:
        state = "held" if self._open else "released"
        return f"LockedConnection({self.record.id!r}, token_version={self.record.token_version}, {state})"

    def _check_open(self) -> None:
        if not self._open:
            raise RuntimeError("the refresh lock was released; take it again with ConnectionStore.refresh_lock")

    def save_tokens(
        self,
        secrets: Secrets,
        *,
        access_expires_at: float | None,
        granted_roles: Sequence[str] | None = None,
    ) -> ConnectionRecord:
        """Write new credentials with a compare-and-swap on ``token_version`` and bump it.

        Args:
            secrets: the complete new credentials (keep the old refresh token yourself if none was returned).
            access_expires_at: the new access-token expiry (epoch seconds), or ``None``.
            granted_roles: the roles now granted; ``None`` keeps the stored ones.

        Returns:
            The updated record (also available as :attr:`record`).

        Raises:
            StoreConflictError: the row changed under the lock (should not happen; indicates a writer that
                bypassed the lock) or was deleted.
            RuntimeError: the lock was already released.
        """
        self._check_open()
        if not isinstance(secrets, Secrets):
            raise TypeError("save_tokens() needs a Secrets instance")
        current = self.record
        roles = current.granted_roles if granted_roles is None else _str_tuple("granted_roles", granted_roles)
        now = _utcnow()
        result = self._conn.execute(
            update(_connections)
            .where(_connections.c.id == current.id, _connections.c.token_version == current.token_version)
            .values(
                secrets_ciphertext=self._store.secret_box.encrypt(secrets.to_json(), aad=_connection_aad(current.id)),
                token_version=current.token_version + 1,
                access_expires_at=access_expires_at,
                granted_roles=None if roles is None else list(roles),
                updated_at=now,
            )
        )
        if result.rowcount != 1:
            raise StoreConflictError(
                f"connection {current.id}: token_version {current.token_version} is no longer current "
                "(written without the refresh lock, or deleted); not saving the refreshed tokens"
            )
        self.record = replace(
            current,
            secrets=secrets,
            token_version=current.token_version + 1,
            access_expires_at=access_expires_at,
            granted_roles=roles,
            updated_at=now,
        )
        logger.debug("connection %s: saved tokens (token_version %d)", current.id, self.record.token_version)
        return self.record

    def mark_needs_reauth(self, reason: str) -> ConnectionRecord:
        """Move the connection to ``needs_reauth`` (its refresh failed for good).

        Args:
            reason: why, for the owner and the operator (must not contain secrets).

        Returns:
            The updated record.

        Raises:
            RuntimeError: the lock was already released.
        """
        self._check_open()
        now = _utcnow()
        self._conn.execute(
            update(_connections)
            .where(_connections.c.id == self.record.id)
            .values(status="needs_reauth", status_reason=reason, updated_at=now)
        )
        self.record = replace(self.record, status="needs_reauth", status_reason=reason, updated_at=now)
        logger.info("connection %s: needs re-authorization", self.record.id)
        return self.record


class ConnectionStore:
    """SQL store of connections and the other state the runtime shares between processes.

    The API is synchronous and thread-safe; async code calls it through ``anyio.to_thread.run_sync``.

    Args:
        url: SQLAlchemy URL: ``sqlite:///path.db``, ``sqlite:///:memory:`` or ``postgresql+psycopg://...``
            (``postgres://`` and ``postgresql://`` are taken to mean psycopg 3).
        secret_box: encrypts and decrypts the credentials.
        echo: log every SQL statement (parameters are never logged).
        lock_timeout: seconds to wait for a lock held by another connection/process before raising
            :class:`StoreConflictError`.

    Raises:
        ConfigurationError: unsupported database, or its schema is newer than this release.
    """

    def __init__(
        self,
        url: str | URL,
        *,
        secret_box: SecretBox,
        echo: bool = False,
        lock_timeout: float = 30.0,
    ) -> None:
        parsed = _normalise_url(url)
        self.secret_box = secret_box
        self._lock_timeout = lock_timeout
        self._display_url = (
            f"sqlite:///{parsed.database or ':memory:'}"
            if parsed.get_backend_name() == "sqlite"
            else parsed.render_as_string(hide_password=True)
        )
        self._gate: threading.Lock | None = None
        self._purge_lock = threading.Lock()
        self._last_purge: dict[str, float] = {}
        backend = parsed.get_backend_name()
        if backend == "sqlite":
            connect_args = {"check_same_thread": False, "timeout": lock_timeout}
            if _is_memory_sqlite(parsed):
                self._gate = threading.Lock()  # one shared DBAPI connection: one transaction at a time
                self._engine = create_engine(
                    parsed, poolclass=StaticPool, connect_args=connect_args, echo=echo, hide_parameters=True
                )
                event.listen(self._engine, "connect", _on_sqlite_connect(wal=False))
            else:
                if parsed.database:
                    Path(parsed.database).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                self._engine = create_engine(parsed, connect_args=connect_args, echo=echo, hide_parameters=True)
                event.listen(self._engine, "connect", _on_sqlite_connect(wal=True))
            event.listen(self._engine, "begin", _on_sqlite_begin)
        elif backend == "postgresql":
            self._engine = create_engine(parsed, echo=echo, hide_parameters=True, pool_pre_ping=True)
            event.listen(self._engine, "connect", _on_pg_connect(max(1, int(lock_timeout * 1000))))
        else:
            raise ConfigurationError(
                f"unsupported connection store database {backend!r} ({DATABASE_URL_ENV_VAR}); "
                "use sqlite:///... or postgresql+psycopg://..."
            )
        self._dialect: str = backend
        try:
            self._migrate()
        except BaseException:
            self._engine.dispose()
            raise
        logger.info("connection store ready at %s (schema version %d)", self._display_url, SCHEMA_VERSION)

    # ---------------------------------------------------------------------------------- construction

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] = os.environ,
        *,
        embedded_default: bool,
        echo: bool = False,
    ) -> ConnectionStore:
        """Open the store configured by the environment.

        ``CONNECTORS_DATABASE_URL`` selects the database; without it, a SQLite file
        ``$CONNECTORS_HOME/connectors.db`` (default ``./.connectors/connectors.db``). The key comes from
        ``CONNECTORS_SECRET_KEY`` or the key file ``secret.key`` next to the SQLite file (or in
        ``$CONNECTORS_HOME`` for PostgreSQL); previous keys from ``CONNECTORS_OLD_SECRET_KEYS``.

        Args:
            env: the environment to read.
            embedded_default: generate the key file if there is no key (with a warning). Never done for
                PostgreSQL: every worker machine must share one key, so set ``CONNECTORS_SECRET_KEY``.
            echo: log every SQL statement.

        Returns:
            The open store.

        Raises:
            ConfigurationError: no usable key, or an unsupported/invalid database URL.
        """
        home = Path(env.get(HOME_ENV_VAR, "").strip() or DEFAULT_HOME).expanduser().absolute()
        raw_url = env.get(DATABASE_URL_ENV_VAR, "").strip()
        url: URL
        generate = embedded_default
        if raw_url:
            try:
                url = _normalise_url(raw_url)
            except Exception:
                raise ConfigurationError(f"{DATABASE_URL_ENV_VAR} is not a valid database URL") from None
            if url.get_backend_name() == "sqlite" and not _is_memory_sqlite(url) and url.database:
                key_file = Path(url.database).expanduser().absolute().parent / KEY_FILE_NAME
            else:
                key_file = home / KEY_FILE_NAME
                generate = embedded_default and url.get_backend_name() == "sqlite"
        else:
            url = URL.create("sqlite", database=str(home / DB_FILE_NAME))
            key_file = home / KEY_FILE_NAME
        key = load_secret_key(env=env, key_file=key_file, generate=generate)
        box = SecretBox(key, old_keys=load_old_secret_keys(env))
        return cls(url, secret_box=box, echo=echo)

    def __repr__(self) -> str:
        return f"ConnectionStore({self._display_url!r})"

    def __enter__(self) -> ConnectionStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close every pooled database connection."""
        self._engine.dispose()

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._dialect

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for diagnostics and tests; the schema is private)."""
        return self._engine

    # ---------------------------------------------------------------------------------- transactions

    @contextmanager
    def _tx(self, *, write: bool) -> Iterator[Connection]:
        gate = self._gate
        if gate is not None and not gate.acquire(timeout=self._lock_timeout):
            raise StoreConflictError(f"timed out after {self._lock_timeout:g}s waiting for the in-memory store")
        try:
            with self._engine.connect() as conn:
                if self._dialect == "sqlite":
                    conn.execution_options(**{_SQLITE_BEGIN_OPTION: "IMMEDIATE" if write else "DEFERRED"})
                with conn.begin():
                    yield conn
        except DBAPIError as exc:
            if _is_lock_error(exc):
                raise StoreConflictError(
                    "the database is locked by another process/thread (waited up to "
                    f"{self._lock_timeout:g}s for it); retry"
                ) from None
            raise
        finally:
            if gate is not None:
                gate.release()

    def _migrate(self) -> None:
        with self._tx(write=True) as conn:
            if self._dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK_KEY})
            _schema_version.create(conn, checkfirst=True)
            current = conn.execute(select(func.max(_schema_version.c.version))).scalar_one_or_none()
            if current is not None and current > SCHEMA_VERSION:
                raise ConfigurationError(
                    f"the connection store at {self._display_url} has schema version {current}, newer than "
                    f"this release supports ({SCHEMA_VERSION}); upgrade unified-connectors"
                )
            now = _utcnow()
            if current is None:
                MIGRATIONS[0].apply(conn)  # creates the current shape: later steps only stamp
                conn.execute(
                    insert(_schema_version),
                    [{"version": m.version, "description": m.description, "applied_at": now} for m in MIGRATIONS],
                )
                logger.info("created connection store schema version %d", SCHEMA_VERSION)
                return
            for step in MIGRATIONS:
                if step.version > current:
                    step.apply(conn)
                    conn.execute(
                        insert(_schema_version).values(
                            version=step.version, description=step.description, applied_at=now
                        )
                    )
                    logger.info("migrated connection store to schema version %d: %s", step.version, step.description)

    def schema_version(self) -> int:
        """Return the schema version recorded in the database.

        Returns:
            The highest applied migration.
        """
        with self._tx(write=False) as conn:
            return int(conn.execute(select(func.max(_schema_version.c.version))).scalar_one())

    def _insert_ignore_or_update(
        self,
        table: Table,
        values: Mapping[str, Any],
        *,
        set_: Mapping[str, Any] | None = None,
        where: Any = None,
    ) -> Executable:
        """``INSERT ... ON CONFLICT (primary key) DO NOTHING`` / ``DO UPDATE SET ... [WHERE ...]``."""
        keys = [c.name for c in table.primary_key.columns]
        # rowcount tells whether the row was written; SQLAlchemy keeps it for INSERT only when asked to.
        if self._dialect == "postgresql":
            pg_stmt = pg_dialect.insert(table).values(dict(values)).execution_options(preserve_rowcount=True)
            if set_ is None:
                return pg_stmt.on_conflict_do_nothing(index_elements=keys)
            return pg_stmt.on_conflict_do_update(index_elements=keys, set_=dict(set_), where=where)
        lite_stmt = sqlite_dialect.insert(table).values(dict(values)).execution_options(preserve_rowcount=True)
        if set_ is None:
            return lite_stmt.on_conflict_do_nothing(index_elements=keys)
        return lite_stmt.on_conflict_do_update(index_elements=keys, set_=dict(set_), where=where)

    # ---------------------------------------------------------------------------------- connections

    def _record(self, row: Mapping[Any, Any]) -> ConnectionRecord:
        connection_id = str(row["id"])
        plain = self.secret_box.decrypt(row["secrets_ciphertext"], aad=_connection_aad(connection_id))
        roles = row["granted_roles"]
        return ConnectionRecord(
            id=connection_id,
            connector_id=row["connector_id"],
            owner_id=row["owner_id"],
            label=row["label"],
            auth_type=row["auth_type"],
            status=row["status"],
            region=row["region"],
            org=row["org"],
            base_url=row["base_url"],
            operations=tuple(row["operations"]),
            granted_roles=None if roles is None else tuple(roles),
            settings=dict(row["settings"]),
            metadata=dict(row["metadata"]),
            secrets=Secrets.from_json(plain),
            token_version=int(row["token_version"]),
            access_expires_at=row["access_expires_at"],
            status_reason=row["status_reason"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    def upsert_connection(
        self,
        *,
        connector_id: str,
        owner_id: str,
        label: str = "",
        auth_type: _AuthType,
        status: ConnectionStatus,
        region: str | None = None,
        org: str | None = None,
        base_url: str | None = None,
        operations: Sequence[str] = (),
        granted_roles: Sequence[str] | None = None,
        settings: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        secrets: Secrets,
        access_expires_at: float | None = None,
    ) -> ConnectionRecord:
        """Create the connection for ``(connector_id, owner_id, label)``, or replace it (a reconnect).

        A reconnect keeps the connection ``id`` and ``created_at``, replaces every other field and bumps
        ``token_version``, so a refresh that read the old credentials cannot overwrite the new ones.

        Args:
            connector_id: the connector.
            owner_id: the tenant.
            label: distinguishes several connections of one owner.
            auth_type: ``api_key`` or ``oauth2``.
            status: the initial status.
            region: provider region.
            org: provider org subdomain/name.
            base_url: API base URL override.
            operations: the selected operations.
            granted_roles: the roles the credential holds, ``None`` when unknown.
            settings: connector settings (JSON-serialisable, no secrets).
            metadata: identity facts (JSON-serialisable, no secrets).
            secrets: the credentials (stored encrypted).
            access_expires_at: access-token expiry, epoch seconds.

        Returns:
            The stored record.

        Raises:
            TypeError: a value has the wrong type or is not JSON-serialisable.
            ValueError: unknown ``auth_type`` or ``status``.
            StoreConflictError: a lock on the row could not be obtained in time.
        """
        if auth_type not in _AUTH_TYPES:
            raise ValueError(f"unknown auth_type {auth_type!r}; expected one of {sorted(_AUTH_TYPES)}")
        _check_status(status)
        if not isinstance(secrets, Secrets):
            raise TypeError("secrets must be a Secrets instance")
        for name, value in (("connector_id", connector_id), ("owner_id", owner_id), ("label", label)):
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a str")
        if not connector_id or not owner_id:
            raise ValueError("connector_id and owner_id must not be empty")
        fields: dict[str, Any] = {
            "auth_type": auth_type,
            "status": status,
            "status_reason": None,
            "region": region,
            "org": org,
            "base_url": base_url,
            "operations": list(_str_tuple("operations", operations)),
            "granted_roles": None if granted_roles is None else list(_str_tuple("granted_roles", granted_roles)),
            "settings": _json_dict("settings", settings),
            "metadata": _json_dict("metadata", metadata),
            "access_expires_at": access_expires_at,
        }
        key = (
            (_connections.c.connector_id == connector_id)
            & (_connections.c.owner_id == owner_id)
            & (_connections.c.label == label)
        )
        for attempt in range(3):
            try:
                with self._tx(write=True) as conn:
                    existing = conn.execute(select(_connections).where(key).with_for_update()).mappings().first()
                    now = _utcnow()
                    if existing is None:
                        connection_id, version, created = uuid.uuid4().hex, 1, now
                    else:
                        connection_id = str(existing["id"])
                        version = int(existing["token_version"]) + 1
                        created = existing["created_at"]
                    values = {
                        **fields,
                        "secrets_ciphertext": self.secret_box.encrypt(
                            secrets.to_json(), aad=_connection_aad(connection_id)
                        ),
                        "token_version": version,
                        "updated_at": now,
                    }
                    if existing is None:
                        conn.execute(
                            insert(_connections).values(
                                id=connection_id,
                                connector_id=connector_id,
                                owner_id=owner_id,
                                label=label,
                                created_at=created,
                                **values,
                            )
                        )
                    else:
                        conn.execute(update(_connections).where(_connections.c.id == connection_id).values(values))
            except IntegrityError:  # PostgreSQL: another process inserted the same key first
                if attempt == 2:
                    raise
                continue
            logger.info(
                "%s connection %s (%s, owner %s, label %r)",
                "created" if existing is None else "reconnected",
                connection_id,
                connector_id,
                owner_id,
                label,
            )
            return ConnectionRecord(
                id=connection_id,
                connector_id=connector_id,
                owner_id=owner_id,
                label=label,
                auth_type=auth_type,
                status=status,
                region=region,
                org=org,
                base_url=base_url,
                operations=tuple(fields["operations"]),
                granted_roles=None if granted_roles is None else tuple(fields["granted_roles"]),
                settings=fields["settings"],
                metadata=fields["metadata"],
                secrets=secrets,
                token_version=version,
                access_expires_at=access_expires_at,
                status_reason=None,
                created_at=created,
                updated_at=now,
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def get(self, connector_id: str, owner_id: str, label: str = "") -> ConnectionRecord | None:
        """Return the connection for ``(connector_id, owner_id, label)``.

        Args:
            connector_id: the connector.
            owner_id: the tenant.
            label: which of the owner's connections.

        Returns:
            The record, or ``None``.

        Raises:
            ConfigurationError: its credentials cannot be decrypted (wrong key).
        """
        stmt = select(_connections).where(
            _connections.c.connector_id == connector_id,
            _connections.c.owner_id == owner_id,
            _connections.c.label == label,
        )
        with self._tx(write=False) as conn:
            row = conn.execute(stmt).mappings().first()
        return None if row is None else self._record(row)

    def get_by_id(self, id: str) -> ConnectionRecord | None:
        """Return the connection with this id.

        Args:
            id: the connection id.

        Returns:
            The record, or ``None``.

        Raises:
            ConfigurationError: its credentials cannot be decrypted (wrong key).
        """
        with self._tx(write=False) as conn:
            row = conn.execute(select(_connections).where(_connections.c.id == id)).mappings().first()
        return None if row is None else self._record(row)

    def list(self, *, owner_id: str | None = None, connector_id: str | None = None) -> builtins.list[ConnectionRecord]:
        """Return the connections, optionally of one owner and/or connector, oldest first.

        Args:
            owner_id: only this tenant's.
            connector_id: only this connector's.

        Returns:
            The records.

        Raises:
            ConfigurationError: credentials cannot be decrypted (wrong key).
        """
        stmt = select(_connections).order_by(_connections.c.created_at, _connections.c.id)
        if owner_id is not None:
            stmt = stmt.where(_connections.c.owner_id == owner_id)
        if connector_id is not None:
            stmt = stmt.where(_connections.c.connector_id == connector_id)
        with self._tx(write=False) as conn:
            rows = conn.execute(stmt).mappings().all()
        return [self._record(row) for row in rows]

    def delete(self, id: str) -> bool:
        """Delete a connection and its encrypted credentials.

        Args:
            id: the connection id.

        Returns:
            Whether it existed.
        """
        with self._tx(write=True) as conn:
            deleted = conn.execute(delete(_connections).where(_connections.c.id == id)).rowcount == 1
        if deleted:
            logger.info("deleted connection %s", id)
        return deleted

    def update(self, id: str, **changes: Unpack[ConnectionChanges]) -> ConnectionRecord:
        """Change non-credential fields of a connection.

        Args:
            id: the connection id.
            **changes: any of ``status``, ``status_reason``, ``granted_roles``, ``operations``, ``settings``,
                ``metadata``, ``region``, ``org``, ``base_url``.

        Returns:
            The updated record.

        Raises:
            TypeError: an unknown field (credentials change only through :meth:`refresh_lock`) or a value of
                the wrong type.
            ValueError: unknown status.
            NotConnectedError: no connection has this id.
        """
        unknown = sorted(set(changes) - _UPDATABLE)
        if unknown:
            hint = (
                " (credentials and token fields change only through refresh_lock().save_tokens() or "
                "upsert_connection())"
                if set(unknown) & {"secrets", "token_version", "access_expires_at"}
                else ""
            )
            raise TypeError(f"update() got unknown field(s): {', '.join(unknown)}{hint}")
        values: dict[str, Any] = {}
        raw_changes: dict[str, Any] = dict(changes)
        for name, value in raw_changes.items():
            if name == "status":
                _check_status(str(value))
                values[name] = value
            elif name == "operations":
                values[name] = list(_str_tuple(name, value))
            elif name == "granted_roles":
                values[name] = None if value is None else list(_str_tuple(name, value))
            elif name in ("settings", "metadata"):
                values[name] = _json_dict(name, value)
            else:
                if value is not None and not isinstance(value, str):
                    raise TypeError(f"{name} must be a str or None")
                values[name] = value
        with self._tx(write=True) as conn:
            row = conn.execute(select(_connections).where(_connections.c.id == id).with_for_update()).mappings().first()
            if row is None:
                raise NotConnectedError(f"no connection with id {id!r}")
            values["updated_at"] = _utcnow()
            if values.keys() - {"updated_at"}:
                conn.execute(update(_connections).where(_connections.c.id == id).values(values))
            merged = {**row, **values}
        return self._record(merged)

    @contextmanager
    def refresh_lock(self, id: str) -> Iterator[LockedConnection]:
        """Hold a cross-process exclusive lock on one connection while its tokens are refreshed.

        PostgreSQL: ``SELECT ... FOR UPDATE`` of the row (other rows stay writable). SQLite: a
        ``BEGIN IMMEDIATE`` transaction (the whole database is write-locked; other writers wait up to
        ``lock_timeout``). The record is re-read after the lock is taken: check ``locked.record`` before
        refreshing, another process may have done it already. Commits on normal exit, rolls back on an
        exception. May be entered in one thread and exited in another.

        Args:
            id: the connection id.

        Yields:
            The locked connection.

        Raises:
            NotConnectedError: no connection has this id.
            StoreConflictError: the lock was not obtained within ``lock_timeout``.
        """
        with self._tx(write=True) as conn:
            row = conn.execute(select(_connections).where(_connections.c.id == id).with_for_update()).mappings().first()
            if row is None:
                raise NotConnectedError(f"no connection with id {id!r}")
            locked = LockedConnection(self, conn, self._record(row))
            logger.debug("connection %s: refresh lock taken (token_version %d)", id, locked.record.token_version)
            try:
                yield locked
            finally:
                locked._open = False

    def reencrypt_all(self) -> int:
        """Rewrite every ciphertext still encrypted with an old key using the current key (key rotation).

        Returns:
            How many values were rewritten.

        Raises:
            ConfigurationError: a value decrypts with none of the keys.
        """
        box = self.secret_box
        count = 0
        with self._tx(write=True) as conn:
            for cid, token in conn.execute(select(_connections.c.id, _connections.c.secrets_ciphertext)).all():
                aad = _connection_aad(cid)
                if box.needs_reencryption(token, aad=aad):
                    new = box.encrypt(box.decrypt(token, aad=aad), aad=aad)
                    conn.execute(update(_connections).where(_connections.c.id == cid).values(secrets_ciphertext=new))
                    count += 1
            for state_hash, token in conn.execute(
                select(_oauth_states.c.state_hash, _oauth_states.c.payload_ciphertext)
            ).all():
                aad = _aad("oauth_state", state_hash)
                if box.needs_reencryption(token, aad=aad):
                    new = box.encrypt(box.decrypt(token, aad=aad), aad=aad)
                    conn.execute(
                        update(_oauth_states)
                        .where(_oauth_states.c.state_hash == state_hash)
                        .values(payload_ciphertext=new)
                    )
                    count += 1
            for scope, name, token in conn.execute(
                select(_secrets.c.scope, _secrets.c.name, _secrets.c.ciphertext)
            ).all():
                aad = _aad("secret", scope, name)
                if box.needs_reencryption(token, aad=aad):
                    new = box.encrypt(box.decrypt(token, aad=aad), aad=aad)
                    conn.execute(
                        update(_secrets)
                        .where(_secrets.c.scope == scope, _secrets.c.name == name)
                        .values(ciphertext=new)
                    )
                    count += 1
        logger.info("re-encrypted %d stored secret(s) with the current key", count)
        return count

    # ---------------------------------------------------------------------------------- OAuth state

    def save_oauth_state(self, state_hash: str, payload: Mapping[str, Any], *, expires_at: float) -> None:
        """Remember a pending OAuth authorization (payload encrypted: it may hold a PKCE verifier).

        Args:
            state_hash: a hash of the ``state`` parameter (never the state itself).
            payload: what the callback needs (JSON-serialisable).
            expires_at: epoch seconds after which the state is refused.

        Raises:
            OAuthFlowError: a state with this hash is already pending.
            TypeError: ``payload`` is not JSON-serialisable.
        """
        data = _json_dict("payload", payload)
        token = self.secret_box.encrypt(_canonical_json(data), aad=_aad("oauth_state", state_hash))
        stmt = self._insert_ignore_or_update(
            _oauth_states, {"state_hash": state_hash, "payload_ciphertext": token, "expires_at": expires_at}
        )
        with self._tx(write=True) as conn:
            if conn.execute(stmt).rowcount != 1:
                raise OAuthFlowError("this OAuth state is already pending", error="invalid_request")

    def consume_oauth_state(self, state_hash: str, *, now: float) -> dict[str, Any] | None:
        """Take a pending OAuth state, once: a replay or an expired state gives ``None``.

        Expired states are purged on the way.

        Args:
            state_hash: the hash given to :meth:`save_oauth_state`.
            now: the current time, epoch seconds.

        Returns:
            The payload, or ``None``.

        Raises:
            ConfigurationError: the payload cannot be decrypted (wrong key).
        """
        with self._tx(write=True) as conn:
            row = conn.execute(
                select(_oauth_states.c.payload_ciphertext, _oauth_states.c.expires_at).where(
                    _oauth_states.c.state_hash == state_hash
                )
            ).first()
            taken = (
                row is not None
                and conn.execute(delete(_oauth_states).where(_oauth_states.c.state_hash == state_hash)).rowcount == 1
            )
            conn.execute(delete(_oauth_states).where(_oauth_states.c.expires_at <= now))
            if not taken or row is None or row.expires_at <= now:
                return None
            payload = self.secret_box.decrypt(row.payload_ciphertext, aad=_aad("oauth_state", state_hash))
        data = json.loads(payload)
        return data if isinstance(data, dict) else None

    # ---------------------------------------------------------------------------------- webhook dedupe

    def _purge_due(self, scope: str, now: float, retention_seconds: float) -> bool:
        interval = min(max(retention_seconds / 10.0, 1.0), 300.0)
        with self._purge_lock:
            last = self._last_purge.get(scope)
            if last is not None and 0.0 <= now - last < interval:
                return False
            if len(self._last_purge) >= _MAX_PURGE_SCOPES:
                self._last_purge.clear()
            self._last_purge[scope] = now
            return True

    def seen_once(self, scope: str, key: str, *, now: float, retention_seconds: float) -> bool:
        """Record an event key; tell whether this is its first delivery.

        Atomic across threads and processes: of concurrent callers with the same key exactly one gets
        ``True``. A key older than the retention counts as new again. Entries older than the retention are
        purged now and then (at most every ``retention/10`` seconds per scope and process, 1 s to 5 min).

        Args:
            scope: the dedupe namespace (e.g. ``kustomer:<connection id>``).
            key: the event id.
            now: the current time, epoch seconds.
            retention_seconds: how long a key is remembered.

        Returns:
            ``True`` the first time, ``False`` for a duplicate.
        """
        cutoff = now - retention_seconds
        stmt = self._insert_ignore_or_update(
            _seen_events,
            {"scope": scope, "event_key": key, "seen_at": now},
            set_={"seen_at": now},
            where=_seen_events.c.seen_at < cutoff,
        )
        with self._tx(write=True) as conn:
            first: bool = conn.execute(stmt).rowcount == 1
            if self._purge_due(scope, now, retention_seconds):
                conn.execute(delete(_seen_events).where(_seen_events.c.scope == scope, _seen_events.c.seen_at < cutoff))
        return first

    # ---------------------------------------------------------------------------------- watermarks

    def get_watermark(self, scope: str) -> dict[str, Any] | None:
        """Return the stored watermark of a sync or poller.

        Args:
            scope: e.g. ``<connection id>:genericContact``.

        Returns:
            The value, or ``None`` if never set.
        """
        with self._tx(write=False) as conn:
            value = conn.execute(select(_watermarks.c.value).where(_watermarks.c.scope == scope)).scalar_one_or_none()
        return None if value is None else dict(value)

    def set_watermark(
        self,
        scope: str,
        value: Mapping[str, Any],
        *,
        expected: Mapping[str, Any] | EllipsisType | None = ...,
    ) -> bool:
        """Store a watermark, optionally only if the current one is ``expected`` (compare-and-swap).

        Args:
            scope: the watermark's name.
            value: the new value (JSON-serialisable).
            expected: omitted: write unconditionally; ``None``: only if none is stored yet; a dict: only if
                the stored value equals it.

        Returns:
            Whether the value was written (always ``True`` without ``expected``).

        Raises:
            TypeError: a value is not JSON-serialisable.
        """
        data = _json_dict("value", value)
        now = _utcnow()
        stmt: Executable
        if isinstance(expected, EllipsisType):
            stmt = self._insert_ignore_or_update(
                _watermarks,
                {"scope": scope, "value": data, "updated_at": now},
                set_={"value": data, "updated_at": now},
            )
        elif expected is None:
            stmt = self._insert_ignore_or_update(_watermarks, {"scope": scope, "value": data, "updated_at": now})
        else:
            stmt = (
                update(_watermarks)
                .where(_watermarks.c.scope == scope, _watermarks.c.value == _json_dict("expected", expected))
                .values(value=data, updated_at=now)
            )
        with self._tx(write=True) as conn:
            written: bool = conn.execute(stmt).rowcount == 1
        return written

    # ---------------------------------------------------------------------------------- other secrets

    def put_secret(self, scope: str, name: str, value: str) -> None:
        """Store (or replace) an encrypted value, e.g. a webhook signing token.

        Args:
            scope: its namespace (e.g. a connection id).
            name: its name within the scope.
            value: the secret.
        """
        if not isinstance(value, str):
            raise TypeError("put_secret() value must be a str")
        token = self.secret_box.encrypt(value, aad=_aad("secret", scope, name))
        now = _utcnow()
        stmt = self._insert_ignore_or_update(
            _secrets,
            {"scope": scope, "name": name, "ciphertext": token, "updated_at": now},
            set_={"ciphertext": token, "updated_at": now},
        )
        with self._tx(write=True) as conn:
            conn.execute(stmt)

    def get_secret(self, scope: str, name: str) -> str | None:
        """Return a value stored with :meth:`put_secret`.

        Args:
            scope: its namespace.
            name: its name.

        Returns:
            The secret, or ``None``.

        Raises:
            ConfigurationError: it cannot be decrypted (wrong key).
        """
        with self._tx(write=False) as conn:
            token = conn.execute(
                select(_secrets.c.ciphertext).where(_secrets.c.scope == scope, _secrets.c.name == name)
            ).scalar_one_or_none()
        return None if token is None else self.secret_box.decrypt(token, aad=_aad("secret", scope, name))

    def delete_secret(self, scope: str, name: str) -> bool:
        """Delete a value stored with :meth:`put_secret`.

        Args:
            scope: its namespace.
            name: its name.

        Returns:
            Whether it existed.
        """
        with self._tx(write=True) as conn:
            result = conn.execute(delete(_secrets).where(_secrets.c.scope == scope, _secrets.c.name == name))
        return result.rowcount == 1

    def delete_watermark(self, scope: str) -> bool:
        """Forget a watermark (a poller that is no longer needed).

        Args:
            scope: the watermark's name.

        Returns:
            Whether one was stored.
        """
        with self._tx(write=True) as conn:
            result = conn.execute(delete(_watermarks).where(_watermarks.c.scope == scope))
        return result.rowcount == 1

    # ---------------------------------------------------------------------------------- leases

    def acquire_lease(self, name: str, holder: str, *, ttl: float, now: float) -> bool:
        """Take (or extend) a named lease until ``now + ttl``, unless another holder has a live one.

        Leases serialise work across processes without holding a database transaction open (e.g. creating a
        provider webhook, or one poller per connection). A crashed holder's lease simply expires.

        Args:
            name: the lease.
            holder: who takes it (unique per process and task).
            ttl: seconds the lease lasts.
            now: the current time, epoch seconds.

        Returns:
            Whether ``holder`` now holds the lease.
        """
        if ttl <= 0:
            raise ValueError("a lease needs a positive ttl")
        expires = now + ttl
        stmt = self._insert_ignore_or_update(
            _leases,
            {"name": name, "holder": holder, "expires_at": expires},
            set_={"holder": holder, "expires_at": expires},
            where=(_leases.c.expires_at <= now) | (_leases.c.holder == holder),
        )
        with self._tx(write=True) as conn:
            taken: bool = conn.execute(stmt).rowcount == 1
        return taken

    def release_lease(self, name: str, holder: str) -> bool:
        """Release a lease if ``holder`` still holds it.

        Args:
            name: the lease.
            holder: who took it.

        Returns:
            Whether it was held by ``holder``.
        """
        with self._tx(write=True) as conn:
            result = conn.execute(delete(_leases).where(_leases.c.name == name, _leases.c.holder == holder))
        return result.rowcount == 1

    # ---------------------------------------------------------------------------------- webhook endpoints

    @staticmethod
    def _endpoint(row: Mapping[Any, Any]) -> WebhookEndpointRecord:
        return WebhookEndpointRecord(
            id=row["id"],
            connector_id=row["connector_id"],
            org_key=row["org_key"],
            url=row["url"],
            remotes=tuple(
                RemoteWebhookRef(id=str(r["id"]), events=tuple(str(e) for e in r.get("events") or ()))
                for r in row["remotes"]
            ),
            version=int(row["version"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    def get_webhook_endpoint(self, id: str) -> WebhookEndpointRecord | None:
        """Return a webhook endpoint.

        Args:
            id: the endpoint id.

        Returns:
            The record, or ``None``.
        """
        with self._tx(write=False) as conn:
            row = conn.execute(select(_webhook_endpoints).where(_webhook_endpoints.c.id == id)).mappings().first()
        return None if row is None else self._endpoint(row)

    def list_webhook_endpoints(
        self, *, connector_id: str | None = None, org_key: str | None = None
    ) -> builtins.list[WebhookEndpointRecord]:
        """Return webhook endpoints, optionally of one connector and/or provider org.

        Args:
            connector_id: only this connector's.
            org_key: only this org's.

        Returns:
            The records, oldest first.
        """
        stmt = select(_webhook_endpoints).order_by(_webhook_endpoints.c.created_at, _webhook_endpoints.c.id)
        if connector_id is not None:
            stmt = stmt.where(_webhook_endpoints.c.connector_id == connector_id)
        if org_key is not None:
            stmt = stmt.where(_webhook_endpoints.c.org_key == org_key)
        with self._tx(write=False) as conn:
            rows = conn.execute(stmt).mappings().all()
        return [self._endpoint(row) for row in rows]

    def save_webhook_endpoint(
        self,
        *,
        id: str,
        connector_id: str,
        org_key: str,
        url: str,
        remotes: Sequence[RemoteWebhookRef],
        expected_version: int | None,
    ) -> WebhookEndpointRecord:
        """Create or update a webhook endpoint with a compare-and-swap on its version.

        Args:
            id: the endpoint id.
            connector_id: the connector.
            org_key: the provider org.
            url: the receive URL.
            remotes: the provider webhooks.
            expected_version: ``None`` to create (fails if it exists), else the version read before.

        Returns:
            The stored record.

        Raises:
            StoreConflictError: another writer changed (or created) it first.
        """
        now = _utcnow()
        data = [{"id": r.id, "events": list(r.events)} for r in remotes]
        with self._tx(write=True) as conn:
            if expected_version is None:
                stmt = self._insert_ignore_or_update(
                    _webhook_endpoints,
                    {
                        "id": id,
                        "connector_id": connector_id,
                        "org_key": org_key,
                        "url": url,
                        "remotes": data,
                        "version": 1,
                        "created_at": now,
                        "updated_at": now,
                    },
                )
                if conn.execute(stmt).rowcount != 1:
                    raise StoreConflictError(f"webhook endpoint {id} was created concurrently")
                created, version = now, 1
            else:
                result = conn.execute(
                    update(_webhook_endpoints)
                    .where(_webhook_endpoints.c.id == id, _webhook_endpoints.c.version == expected_version)
                    .values(remotes=data, version=expected_version + 1, updated_at=now)
                )
                if result.rowcount != 1:
                    raise StoreConflictError(f"webhook endpoint {id} changed concurrently (version {expected_version})")
                created = conn.execute(
                    select(_webhook_endpoints.c.created_at).where(_webhook_endpoints.c.id == id)
                ).scalar_one()
                version = expected_version + 1
        return WebhookEndpointRecord(
            id=id,
            connector_id=connector_id,
            org_key=org_key,
            url=url,
            remotes=tuple(remotes),
            version=version,
            created_at=created,
            updated_at=now,
        )

    def delete_webhook_endpoint(self, id: str) -> bool:
        """Delete a webhook endpoint record (its secrets are deleted separately).

        Args:
            id: the endpoint id.

        Returns:
            Whether it existed.
        """
        with self._tx(write=True) as conn:
            result = conn.execute(delete(_webhook_endpoints).where(_webhook_endpoints.c.id == id))
        return result.rowcount == 1

    # ---------------------------------------------------------------------------------- subscriptions

    @staticmethod
    def _subscription(row: Mapping[Any, Any]) -> WebhookSubscriptionRecord:
        return WebhookSubscriptionRecord(
            connection_id=row["connection_id"],
            event=row["event"],
            connector_id=row["connector_id"],
            owner_id=row["owner_id"],
            org_key=row["org_key"],
            native=bool(row["native"]),
            endpoint_id=row["endpoint_id"],
            created_at=row["created_at"],
        )

    def put_webhook_subscriptions(
        self, subscriptions: Sequence[WebhookSubscriptionRecord]
    ) -> builtins.list[WebhookSubscriptionRecord]:
        """Create subscriptions, or update how existing ones are served (``created_at`` is kept).

        Args:
            subscriptions: the subscriptions (their ``created_at`` is used for new rows only).

        Returns:
            The stored records, in the order given.
        """
        out: list[WebhookSubscriptionRecord] = []
        with self._tx(write=True) as conn:
            for sub in subscriptions:
                values = {
                    "connection_id": sub.connection_id,
                    "event": sub.event,
                    "connector_id": sub.connector_id,
                    "owner_id": sub.owner_id,
                    "org_key": sub.org_key,
                    "native": sub.native,
                    "endpoint_id": sub.endpoint_id,
                    "created_at": sub.created_at,
                }
                changes = {k: v for k, v in values.items() if k not in ("connection_id", "event", "created_at")}
                conn.execute(self._insert_ignore_or_update(_webhook_subscriptions, values, set_=changes))
                row = (
                    conn.execute(
                        select(_webhook_subscriptions).where(
                            _webhook_subscriptions.c.connection_id == sub.connection_id,
                            _webhook_subscriptions.c.event == sub.event,
                        )
                    )
                    .mappings()
                    .one()
                )
                out.append(self._subscription(row))
        return out

    def list_webhook_subscriptions(
        self,
        *,
        connection_id: str | None = None,
        connector_id: str | None = None,
        org_key: str | None = None,
        events: Sequence[str] | None = None,
        endpoint_id: str | None = None,
        native: bool | None = None,
    ) -> builtins.list[WebhookSubscriptionRecord]:
        """Return subscriptions matching every given filter.

        Args:
            connection_id: of this connection.
            connector_id: of this connector.
            org_key: of this provider org.
            events: for these unified events.
            endpoint_id: served by this endpoint.
            native: native (``True``) or polled (``False``) only.

        Returns:
            The records, ordered by connection and event.
        """
        t = _webhook_subscriptions
        stmt = select(t).order_by(t.c.connection_id, t.c.event)
        if connection_id is not None:
            stmt = stmt.where(t.c.connection_id == connection_id)
        if connector_id is not None:
            stmt = stmt.where(t.c.connector_id == connector_id)
        if org_key is not None:
            stmt = stmt.where(t.c.org_key == org_key)
        if events is not None:
            stmt = stmt.where(t.c.event.in_(list(events)))
        if endpoint_id is not None:
            stmt = stmt.where(t.c.endpoint_id == endpoint_id)
        if native is not None:
            stmt = stmt.where(t.c.native == native)
        with self._tx(write=False) as conn:
            rows = conn.execute(stmt).mappings().all()
        return [self._subscription(row) for row in rows]

    def delete_webhook_subscriptions(self, connection_id: str, events: Sequence[str] | None = None) -> int:
        """Delete a connection's subscriptions (all of them when ``events`` is ``None``).

        Args:
            connection_id: the connection.
            events: which unified events.

        Returns:
            How many were deleted.
        """
        t = _webhook_subscriptions
        stmt = delete(t).where(t.c.connection_id == connection_id)
        if events is not None:
            stmt = stmt.where(t.c.event.in_(list(events)))
        with self._tx(write=True) as conn:
            count: int = conn.execute(stmt).rowcount
        return count

    # ---------------------------------------------------------------------------------- subscribers

    @staticmethod
    def _subscriber(row: Mapping[Any, Any]) -> WebhookSubscriberRecord:
        return WebhookSubscriberRecord(
            id=row["id"],
            owner_id=row["owner_id"],
            url=row["url"],
            events=tuple(row["events"]),
            created_at=row["created_at"],
        )

    def add_webhook_subscriber(
        self, *, owner_id: str, url: str, events: Sequence[str], secret: str
    ) -> WebhookSubscriberRecord:
        """Store a forwarding target and its signing secret (encrypted), in one transaction.

        Args:
            owner_id: whose events it receives.
            url: where events are POSTed.
            events: event patterns.
            secret: the signing secret.

        Returns:
            The stored record.
        """
        record = WebhookSubscriberRecord(
            id=uuid.uuid4().hex,
            owner_id=owner_id,
            url=url,
            events=_str_tuple("events", events),
            created_at=_utcnow(),
        )
        scope, name = _subscriber_secret(record.id)
        token = self.secret_box.encrypt(secret, aad=_aad("secret", scope, name))
        with self._tx(write=True) as conn:
            conn.execute(
                insert(_webhook_subscribers).values(
                    id=record.id,
                    owner_id=owner_id,
                    url=url,
                    events=list(record.events),
                    created_at=record.created_at,
                )
            )
            conn.execute(
                insert(_secrets).values(scope=scope, name=name, ciphertext=token, updated_at=record.created_at)
            )
        return record

    def list_webhook_subscribers(self, *, owner_id: str | None = None) -> builtins.list[WebhookSubscriberRecord]:
        """Return forwarding targets, optionally of one owner.

        Args:
            owner_id: only this owner's.

        Returns:
            The records, oldest first.
        """
        t = _webhook_subscribers
        stmt = select(t).order_by(t.c.created_at, t.c.id)
        if owner_id is not None:
            stmt = stmt.where(t.c.owner_id == owner_id)
        with self._tx(write=False) as conn:
            rows = conn.execute(stmt).mappings().all()
        return [self._subscriber(row) for row in rows]

    def get_webhook_subscriber(self, id: str) -> WebhookSubscriberRecord | None:
        """Return one forwarding target.

        Args:
            id: its id.

        Returns:
            The record, or ``None``.
        """
        t = _webhook_subscribers
        with self._tx(write=False) as conn:
            row = conn.execute(select(t).where(t.c.id == id)).mappings().first()
        return None if row is None else self._subscriber(row)

    def get_webhook_subscriber_secret(self, id: str) -> str | None:
        """Return a forwarding target's signing secret.

        Args:
            id: its id.

        Returns:
            The secret, or ``None``.

        Raises:
            ConfigurationError: it cannot be decrypted (wrong key).
        """
        return self.get_secret(*_subscriber_secret(id))

    def delete_webhook_subscriber(self, *, owner_id: str, id: str) -> bool:
        """Delete one of an owner's forwarding targets, its secret and its pending deliveries.

        Args:
            owner_id: the owner (another owner's target is never deleted).
            id: its id.

        Returns:
            Whether the owner had it.
        """
        t = _webhook_subscribers
        scope, name = _subscriber_secret(id)
        with self._tx(write=True) as conn:
            deleted = conn.execute(delete(t).where(t.c.id == id, t.c.owner_id == owner_id)).rowcount == 1
            if deleted:
                conn.execute(delete(_secrets).where(_secrets.c.scope == scope, _secrets.c.name == name))
                conn.execute(delete(_event_outbox).where(_event_outbox.c.target == id))
        return deleted

    # ---------------------------------------------------------------------------------- poll state

    def poll_known(self, scope: str) -> dict[str, str | None]:
        """Return the objects a poller knows (object key -> version), for deletion detection.

        Args:
            scope: the poller's namespace.

        Returns:
            The known objects.
        """
        t = _poll_known
        with self._tx(write=False) as conn:
            rows = conn.execute(select(t.c.object_key, t.c.version).where(t.c.scope == scope)).all()
        return {str(key): version for key, version in rows}

    def clear_poll_state(self, scope: str) -> None:
        """Forget a poller's watermark and known objects.

        Args:
            scope: the poller's namespace (also the watermark's name).
        """
        with self._tx(write=True) as conn:
            conn.execute(delete(_poll_known).where(_poll_known.c.scope == scope))
            conn.execute(delete(_watermarks).where(_watermarks.c.scope == scope))

    def object_version(self, scope: str, key: str) -> str | None:
        """Return the last version recorded for an object (see :class:`VersionCheck`).

        Args:
            scope: the namespace.
            key: the object.

        Returns:
            The version, or ``None``.
        """
        t = _object_versions
        with self._tx(write=False) as conn:
            value = conn.execute(
                select(t.c.version).where(t.c.scope == scope, t.c.object_key == key)
            ).scalar_one_or_none()
        return None if value is None else str(value)

    # ---------------------------------------------------------------------------------- event commit

    def commit_events(
        self,
        candidates: Sequence[EventCandidate],
        *,
        now: float,
        dedupe: tuple[str, str] | None = None,
        dedupe_retention: float = 3 * 86400.0,
        watermark: WatermarkSwap | None = None,
        known_upsert: Mapping[str, Mapping[str, str | None]] | None = None,
        known_remove: Mapping[str, Iterable[str]] | None = None,
        version_retention: float = 7 * 86400.0,
        lease_seconds: float = 0.0,
        finish: Sequence[str] = (),
    ) -> CommitResult:
        """Accept events atomically: dedupe, watermark, stale check, poll state and outbox in ONE transaction.

        In order: the dedupe key is claimed (a key seen within ``dedupe_retention`` makes it a duplicate and
        nothing is written); the watermark is swapped (a failed compare-and-swap writes nothing: another
        poller got there first); each candidate's version is checked and recorded (a stale update's rows are
        skipped); the known objects of pollers are updated; the accepted rows are written to the outbox, ``local`` ones
        with a lease of ``lease_seconds`` (so that the caller can deliver them itself before any background
        dispatcher may). Either all of it is committed or none.

        Args:
            candidates: events to write, each with an optional version check.
            now: the current time, epoch seconds.
            dedupe: ``(scope, key)`` of the delivery, e.g. ``("kustomer:<org>", <event id>)``.
            dedupe_retention: seconds a dedupe key is remembered.
            watermark: a compare-and-swap to do in the same transaction.
            known_upsert: poller scope -> {object key: version} to remember.
            known_remove: poller scope -> object keys to forget.
            version_retention: seconds object versions are remembered.
            finish: outbox rows delivered meanwhile, deleted first (in their own transaction, so that they go
                even when the events are a duplicate or lose the compare-and-swap).
            lease_seconds: initial lease of the written ``local`` rows (the committing process delivers those
                itself; forwarding rows are left to the delivery worker at once).

        Returns:
            What was written.
        """
        accepted: list[bool] = []
        if finish:
            self.finish_outbox(finish)
        try:
            with self._tx(write=True) as conn:
                if dedupe is not None:
                    scope, key = dedupe
                    claim = self._insert_ignore_or_update(
                        _seen_events,
                        {"scope": scope, "event_key": key, "seen_at": now},
                        set_={"seen_at": now},
                        where=_seen_events.c.seen_at < now - dedupe_retention,
                    )
                    if conn.execute(claim).rowcount != 1:
                        _abort("duplicate")
                    if self._purge_due(scope, now, dedupe_retention):
                        conn.execute(
                            delete(_seen_events).where(
                                _seen_events.c.scope == scope, _seen_events.c.seen_at < now - dedupe_retention
                            )
                        )
                if watermark is not None and not self._swap_watermark(conn, watermark):
                    _abort("watermark")
                purged: set[str] = set()
                for candidate in candidates:
                    check = candidate.version
                    fresh = True
                    if check is not None:
                        fresh = self._record_version(conn, check, now)
                        if check.scope not in purged and self._purge_due(
                            f"versions:{check.scope}", now, version_retention
                        ):
                            purged.add(check.scope)
                            conn.execute(
                                delete(_object_versions).where(
                                    _object_versions.c.scope == check.scope,
                                    _object_versions.c.seen_at < now - version_retention,
                                )
                            )
                    accepted.append(fresh)
                    if fresh:
                        for row in candidate.rows:
                            conn.execute(
                                insert(_event_outbox).values(
                                    id=row.id,
                                    target=row.target,
                                    owner_id=row.owner_id,
                                    payload=_json_dict("payload", row.payload),
                                    attempts=0,
                                    status="pending",
                                    available_at=row.available_at,
                                    lease_until=now + lease_seconds if row.target == "local" else 0.0,
                                    last_error=None,
                                    created_at=now,
                                )
                            )
                for scope, objects in (known_upsert or {}).items():
                    for key, version in objects.items():
                        conn.execute(
                            self._insert_ignore_or_update(
                                _poll_known,
                                {"scope": scope, "object_key": key, "version": version},
                                set_={"version": version},
                            )
                        )
                for scope, keys in (known_remove or {}).items():
                    key_list = builtins.list(keys)
                    for start in range(0, len(key_list), 500):
                        conn.execute(
                            delete(_poll_known).where(
                                _poll_known.c.scope == scope,
                                _poll_known.c.object_key.in_(key_list[start : start + 500]),
                            )
                        )
        except _Abort as abort:
            duplicate = abort.args[0] == "duplicate"
            return CommitResult(duplicate=duplicate, swapped=False, accepted=(False,) * len(candidates))
        return CommitResult(duplicate=False, swapped=True, accepted=tuple(accepted))

    def _swap_watermark(self, conn: Connection, swap: WatermarkSwap) -> bool:
        data = _json_dict("value", swap.value)
        now = _utcnow()
        if swap.expected is None:
            stmt: Executable = self._insert_ignore_or_update(
                _watermarks, {"scope": swap.scope, "value": data, "updated_at": now}
            )
        else:
            stmt = (
                update(_watermarks)
                .where(_watermarks.c.scope == swap.scope, _watermarks.c.value == _json_dict("expected", swap.expected))
                .values(value=data, updated_at=now)
            )
        swapped: bool = conn.execute(stmt).rowcount == 1
        return swapped

    def _record_version(self, conn: Connection, check: VersionCheck, now: float) -> bool:
        t = _object_versions
        values = {"scope": check.scope, "object_key": check.key, "version": check.version, "seen_at": now}
        if check.drop_if_older:
            # Written (inserted, or updated because the stored version is not newer) <=> not stale.
            stmt = self._insert_ignore_or_update(
                t, values, set_={"version": check.version, "seen_at": now}, where=t.c.version <= check.version
            )
            fresh: bool = conn.execute(stmt).rowcount == 1
            return fresh
        conn.execute(
            self._insert_ignore_or_update(
                t, values, set_={"version": check.version, "seen_at": now}, where=t.c.version < check.version
            )
        )
        return True

    # ---------------------------------------------------------------------------------- event outbox

    @staticmethod
    def _outbox(row: Mapping[Any, Any]) -> OutboxRecord:
        return OutboxRecord(
            id=row["id"],
            target=row["target"],
            owner_id=row["owner_id"],
            payload=dict(row["payload"]),
            attempts=int(row["attempts"]),
            status=row["status"],
            available_at=float(row["available_at"]),
            last_error=row["last_error"],
            created_at=float(row["created_at"]),
        )

    def claim_outbox(
        self,
        *,
        now: float,
        lease_seconds: float,
        limit: int = 100,
        local: bool | None = None,
        ids: Sequence[str] | None = None,
    ) -> builtins.list[OutboxRecord]:
        """Lease due outbox rows for delivery (each row is leased by one claimer at a time).

        Args:
            now: the current time, epoch seconds.
            lease_seconds: how long the claimer may take before the rows are due again.
            limit: at most this many rows.
            local: only in-process rows (``True``), only forwarding rows (``False``), or both.
            ids: only these rows, whatever their lease (the caller wrote them with its own lease).

        Returns:
            The claimed rows, oldest first.
        """
        t = _event_outbox
        stmt = select(t).where(t.c.status == "pending").order_by(t.c.available_at, t.c.created_at).limit(limit)
        if ids is not None:
            stmt = stmt.where(t.c.id.in_(builtins.list(ids)))
        else:
            stmt = stmt.where(t.c.available_at <= now, t.c.lease_until <= now)
        if local is True:
            stmt = stmt.where(t.c.target == "local")
        elif local is False:
            stmt = stmt.where(t.c.target != "local")
        claimed: list[OutboxRecord] = []
        with self._tx(write=True) as conn:
            rows = conn.execute(stmt.with_for_update(skip_locked=True)).mappings().all()
            for row in rows:
                guard = (t.c.id == row["id"]) & (t.c.lease_until == row["lease_until"])
                if conn.execute(update(t).where(guard).values(lease_until=now + lease_seconds)).rowcount == 1:
                    claimed.append(self._outbox(row))
        return claimed

    def finish_outbox(self, ids: Sequence[str]) -> int:
        """Delete delivered outbox rows.

        Args:
            ids: the rows.

        Returns:
            How many were deleted.
        """
        if not ids:
            return 0
        with self._tx(write=True) as conn:
            count: int = conn.execute(delete(_event_outbox).where(_event_outbox.c.id.in_(builtins.list(ids)))).rowcount
        return count

    def retry_outbox(self, id: str, *, available_at: float, error: str, dead: bool = False) -> None:
        """Record a failed delivery attempt: due again at ``available_at``, or ``dead`` (kept, not retried).

        Args:
            id: the row.
            available_at: epoch seconds of the next attempt.
            error: why it failed (must not contain secrets; truncated to 500 characters).
            dead: give up on it.
        """
        t = _event_outbox
        with self._tx(write=True) as conn:
            conn.execute(
                update(t)
                .where(t.c.id == id)
                .values(
                    attempts=t.c.attempts + 1,
                    available_at=available_at,
                    lease_until=0.0,
                    last_error=error[:500],
                    status="dead" if dead else "pending",
                )
            )

    def list_outbox(self, *, status: str | None = None, limit: int = 100) -> builtins.list[OutboxRecord]:
        """Return outbox rows (for inspection), oldest first.

        Args:
            status: ``pending`` or ``dead`` only.
            limit: at most this many.

        Returns:
            The rows.
        """
        t = _event_outbox
        stmt = select(t).order_by(t.c.created_at, t.c.id).limit(limit)
        if status is not None:
            stmt = stmt.where(t.c.status == status)
        with self._tx(write=False) as conn:
            rows = conn.execute(stmt).mappings().all()
        return [self._outbox(row) for row in rows]

    def outbox_counts(self) -> dict[str, int]:
        """Count outbox rows by kind.

        Returns:
            ``{"pending_local", "pending_forward", "dead"}`` counts.
        """
        t = _event_outbox
        with self._tx(write=False) as conn:
            rows = conn.execute(select(t.c.status, t.c.target, func.count()).group_by(t.c.status, t.c.target)).all()
        counts = {"pending_local": 0, "pending_forward": 0, "dead": 0}
        for status, target, count in rows:
            if status == "dead":
                counts["dead"] += int(count)
            else:
                counts["pending_local" if target == "local" else "pending_forward"] += int(count)
        return counts


def _table_names() -> tuple[str, ...]:
    """Every table of the schema (tests scan them for leaked secrets)."""
    return tuple(_metadata.tables)
