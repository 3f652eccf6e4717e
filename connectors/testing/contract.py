"""The connector contract suite: one pytest base class every connector (and mapper plugin) can subclass.

The idea is singer-sdk's ``get_tap_test_class``: a connector declares what it offers, and the suite checks
that it keeps its promises::

    from connectors.testing import ConnectorContract, ModelCase

    class TestMyConnector(ConnectorContract):
        connector_id = "memory"
        cases = (ModelCase("genericContact", sample=lambda s: {"firstName": "Ada", "tags": [s.tag]}, ...),)

        def sandbox_endpoint(self): ...           # how to reach an in-process fake of the provider

What is checked (each a test method, see their docstrings): registration and the operation table, connect
and identify without leaking the credential, every model operation (create / retrieve / update with PATCH
semantics / list / delete, or a typed ``UnsupportedOperationError`` sent before any request), round-trip
mapping (what is written comes back equal), pagination termination (no loop, no duplicate, no gap, ``iter``
agrees with ``list``), error mapping (404, invalid input, cursor and filter, bad credentials) and permission
errors (early role check before any request, a provider 403, refused ``operations``).

Backends, chosen with ``--contract-backend`` (or ``CONNECTORS_CONTRACT_BACKENDS``; default all three):

``sandbox``
    the provider's in-process fake (:meth:`ConnectorContract.sandbox_endpoint`); nothing is recorded.
``cassette``
    vcrpy cassettes under ``cassettes/<connector>/<TestClass>/``. ``--record-mode=none`` (the default) only
    replays and fails on any request the cassette does not hold (:class:`CassetteMismatch`) and on any
    recorded request the connector no longer sends. With ``--record-mode=once|rewrite|all`` the cassettes
    are recorded from :meth:`~ConnectorContract.recording_endpoint` (the sandbox over real HTTP), or from the
    live org with ``--contract-record-from=live``.
``live``
    a real provider account (:meth:`~ConnectorContract.live_endpoint`), skipped with a reason when no
    credentials are configured. It creates only records carrying the run tag and deletes them afterwards;
    models it cannot delete are only read.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeVar

import anyio
import pytest
from pydantic import BaseModel

from connectors.__about__ import __version__
from connectors.errors import (
    AuthenticationError,
    InsufficientPermissionsError,
    InvalidCursorError,
    MappingError,
    NotFoundError,
    PermissionDeniedError,
    QueryError,
    UnsupportedOperationError,
)
from connectors.testing._cassettes import unplayed
from connectors.testing._cassettes import vcr_config as _vcr_config
from connectors.testing._scrub import SANDBOX_SCRUB_KEY, TAG_PREFIX, Scrubber
from connectors.testing._wire import CassetteMismatch, WireLog, WireRequest
from unified_models import ResourceRef, UnifiedResource, model_class

if TYPE_CHECKING:
    import httpx

    from connectors.registry import Registry
    from connectors.runtime.connection import Connection, Connectors
    from connectors.runtime.connector import Connector
    from connectors.settings import Settings

__all__ = [
    "BACKENDS",
    "CRUD_ACTIONS",
    "ConnectorContract",
    "ContractRun",
    "Endpoint",
    "KnownIssue",
    "ModelCase",
    "SampleContext",
    "assert_round_trip",
    "only_backends",
    "selected_backends",
]

BACKENDS: Final = ("sandbox", "cassette", "live")
"""Every backend, in the order tests are parametrized."""

CRUD_ACTIONS: Final = ("list", "retrieve", "create", "update", "delete")
"""The model operations every mapped model declares."""

BACKENDS_ENV: Final = "CONNECTORS_CONTRACT_BACKENDS"
RECORD_FROM_ENV: Final = "CONNECTORS_CONTRACT_RECORD_FROM"
SCRUB_KEY_ENV: Final = "CONNECTORS_CASSETTE_SCRUB_KEY"

_F = TypeVar("_F", bound=Callable[..., Any])


# -- declarations a subclass makes ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SampleContext:
    """What a payload factory gets.

    Attributes:
        tag: the run tag (``uc-contract-...``); put it in a name, tag or external id of every record so the
            live backend only ever touches its own records and scrubbing keeps their names.
        index: the record number (0 for the lifecycle record; 0..n-1 for pagination records).
        refs: records created by :meth:`ConnectorContract.prepare` (e.g. a contact an engagement belongs to).
    """

    tag: str
    index: int = 0
    refs: Mapping[str, ResourceRef] = field(default_factory=dict)

    def ref(self, name: str) -> ResourceRef:
        """The prerequisite ``name`` as a reference.

        Raises:
            KeyError: :meth:`ConnectorContract.prepare` did not provide it.
        """
        try:
            return self.refs[name]
        except KeyError:
            raise KeyError(f"no prerequisite {name!r}; prepare() provided {sorted(self.refs)}") from None


Payload = Callable[[SampleContext], Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class KnownIssue:
    """A known failure, applied as a strict ``xfail`` (it fails the run once fixed, so it gets removed).

    Attributes:
        reason: what is wrong and where (shown in the report).
        raises: the exception types the failure must raise; anything else is a real failure.
    """

    reason: str
    raises: tuple[type[BaseException], ...] = (AssertionError,)


@dataclass(frozen=True, slots=True)
class ModelCase:
    """How the suite exercises one unified model of the connector.

    Attributes:
        model: the unified model id (``genericContact``, ``custom:order``).
        sample: a valid create payload (camelCase keys); ``None`` when the connector cannot create this model.
        change: an update payload (PATCH semantics: only these fields change).
        tag_filter: list filters that select exactly the records created with the run tag (the pagination
            check creates ``count`` of them). ``None``: the check pages through the whole collection.
        unsupported: actions that must raise :class:`~connectors.errors.UnsupportedOperationError` before
            sending anything.
        live_writes: the live backend may create records (only when it can also delete them).
        page_size: page size of the pagination check (small, so several pages are needed).
        count: records the pagination check creates.
        max_pages: the pagination check fails past this many pages (a runaway cursor).
        missing_id: an id that does not exist (error mapping: 404).
        requires: prerequisites :meth:`ConnectorContract.prepare` creates for this case.
        ignore: fields the provider legitimately rewrites (excluded from round-trip comparisons).
        case_id: test id (default: the model id).
    """

    model: str
    sample: Payload | None = None
    change: Payload | None = None
    tag_filter: Payload | None = None
    unsupported: frozenset[str] = frozenset()
    live_writes: bool = True
    page_size: int = 2
    count: int = 3
    max_pages: int = 50
    missing_id: str = "000000000000000000000000"
    requires: tuple[str, ...] = ()
    ignore: frozenset[str] = frozenset()
    case_id: str = ""

    @property
    def id(self) -> str:
        """The test id of the case."""
        return self.case_id or self.model

    def supports(self, action: str) -> bool:
        """Whether the connector performs ``action`` on this model."""
        return action not in self.unsupported


@dataclass(slots=True)
class Endpoint:
    """Where and how one backend reaches the provider.

    Attributes:
        transport: the innermost ``httpx`` transport (an in-process fake), or ``None`` for real HTTP.
        connect_options: keyword arguments of ``Connectors.connect`` besides the key (``base_url``, ``region``).
        credential: ``credential(purpose, roles)`` returns an API key for ``purpose`` (``"full"`` or
            ``"restricted"``) granted ``roles`` (a fake mints exactly those), or ``None`` when the backend has
            none (the test is then skipped).
        source: ``"sandbox"`` or ``"live"``: where the data comes from (stored in cassette metadata).
        description: a human description of the source (stored in cassette metadata).
        settings: deployment settings of the hub (default ``Settings()``).
        metadata: extra cassette metadata (seed, region...).
        secrets: values that must never reach a cassette (besides the credentials, registered automatically).
    """

    transport: httpx.AsyncBaseTransport | None
    connect_options: Mapping[str, Any]
    credential: Callable[[str, Sequence[str]], str | None]
    source: str = "sandbox"
    description: str = ""
    settings: Settings | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    secrets: Sequence[str] = ()


def only_backends(*names: str) -> Callable[[_F], _F]:
    """Restrict a contract test to some backends (``@only_backends("cassette")``)."""
    unknown = set(names) - set(BACKENDS)
    if unknown:
        raise ValueError(f"unknown backend(s) {sorted(unknown)}; use {BACKENDS}")

    def mark(function: _F) -> _F:
        function._contract_backends = names  # type: ignore[attr-defined]
        return function

    return mark


def _case_filter(predicate: Callable[[ModelCase], bool]) -> Callable[[_F], _F]:
    def mark(function: _F) -> _F:
        function._contract_cases = predicate  # type: ignore[attr-defined]
        return function

    return mark


def selected_backends(config: pytest.Config) -> tuple[str, ...]:
    """Backends chosen by ``--contract-backend`` or ``$CONNECTORS_CONTRACT_BACKENDS`` (default: all).

    Raises:
        pytest.UsageError: an unknown backend name.
    """
    raw: Any = config.getoption("contract_backend", default=None) or os.environ.get(BACKENDS_ENV) or ""
    values = raw if isinstance(raw, list | tuple) else [raw]
    names = [n.strip() for value in values for n in str(value).split(",") if n.strip()]
    if not names or names == ["all"]:
        return BACKENDS
    unknown = sorted(set(names) - set(BACKENDS))
    if unknown:
        raise pytest.UsageError(f"unknown contract backend(s) {unknown}; choose from {', '.join(BACKENDS)}")
    return tuple(b for b in BACKENDS if b in names)


def record_source(config: pytest.Config) -> str:
    """Where cassettes are recorded from: ``sandbox`` (default) or ``live``.

    Raises:
        pytest.UsageError: another value.
    """
    raw = config.getoption("contract_record_from", default=None) or os.environ.get(RECORD_FROM_ENV) or "sandbox"
    if raw not in ("sandbox", "live"):
        raise pytest.UsageError(f"--contract-record-from must be 'sandbox' or 'live', got {raw!r}")
    return str(raw)


# -- comparisons -----------------------------------------------------------------------------------------------


def _comparable(value: Any) -> Any:
    if isinstance(value, ResourceRef):
        return ("ref", value.model, value.id)
    if isinstance(value, list | tuple):
        return [_comparable(v) for v in value]
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_none=True)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items()}
    return value


def assert_round_trip(
    sent: UnifiedResource, received: UnifiedResource, *, ignore: frozenset[str] = frozenset(), what: str = ""
) -> None:
    """Assert that every field ``sent`` sets comes back equal in ``received``.

    References compare by model and id, datetimes by instant, nested models by their JSON form. Read-only
    fields (``id``, timestamps, ``raw``) and ``ignore`` are skipped.

    Raises:
        AssertionError: naming every field that differs, with both values.
    """
    fields = sorted(sent.model_fields_set - type(sent).READ_ONLY_FIELDS - ignore)
    diffs = []
    for name in fields:
        before, after = _comparable(getattr(sent, name)), _comparable(getattr(received, name, None))
        if before != after:
            diffs.append(f"{name}: sent {before!r}, got {after!r}")
    if diffs:
        where = f" ({what})" if what else ""
        raise AssertionError(
            f"{sent.model_id} round trip{where} changed {len(diffs)} field(s):\n  " + "\n  ".join(diffs)
        )


# -- one test's view of a backend ------------------------------------------------------------------------------


class ContractRun:
    """A contract test's backend: a fresh hub on one endpoint, the wire log, the tag, the cleanup list.

    Get it from the ``contract_run`` fixture. Records created through :meth:`create` are deleted when the test
    ends (on every backend, so cassettes pin the deletes too).

    Attributes:
        contract: the contract test instance.
        backend: ``sandbox``, ``cassette`` or ``live``.
        source: ``sandbox`` or ``live``: where the data comes from (a replayed cassette says where it was
            recorded).
        replaying: the cassette backend replays (no provider is reached).
        recording: the cassette backend records.
        tag: the run tag.
        hub: the :class:`~connectors.Connectors` hub (in-memory store).
        wire: every request sent.
        endpoint: the endpoint in use.
        cassette: the vcrpy cassette, on the cassette backend.
        state: scratch space for :meth:`ConnectorContract.prepare` (prerequisites made once per test).
    """

    def __init__(
        self,
        *,
        contract: ConnectorContract,
        backend: str,
        source: str,
        tag: str,
        hub: Connectors,
        wire: WireLog,
        endpoint: Endpoint,
        scrubber: Scrubber,
        replaying: bool = False,
        recording: bool = False,
        cassette: Any = None,
    ) -> None:
        self.contract = contract
        self.backend = backend
        self.source = source
        self.tag = tag
        self.hub = hub
        self.wire = wire
        self.endpoint = endpoint
        self.scrubber = scrubber
        self.replaying = replaying
        self.recording = recording
        self.cassette = cassette
        self.created: list[tuple[str, str]] = []
        self.state: dict[str, Any] = {}
        self._connections: dict[str, Connection] = {}
        self._owners = 0

    def __repr__(self) -> str:
        return f"ContractRun(backend={self.backend!r}, source={self.source!r}, tag={self.tag!r})"

    @property
    def live(self) -> bool:
        """The data is a live org's (the live backend, or a cassette recorded from one)."""
        return self.source == "live"

    @property
    def connector_id(self) -> str:
        """The connector under test."""
        return self.contract.connector_id

    def credential(self, purpose: str, roles: Sequence[str]) -> str | None:
        """An API key from the endpoint (registered as a secret, so it never reaches a cassette)."""
        if self.replaying:
            return f"replayed-{purpose}-credential"
        key = self.endpoint.credential(purpose, roles)
        if key:
            self.scrubber.add_secret(key)
        return key

    def owner(self, label: str = "owner") -> str:
        """A fresh owner id for a connection."""
        self._owners += 1
        return f"contract-{label}-{self._owners}"

    async def connect(
        self,
        purpose: str = "full",
        *,
        roles: Sequence[str] | None = None,
        owner: str | None = None,
        operations: Sequence[str] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> Connection:
        """Connect with a credential for ``purpose``.

        Args:
            purpose: ``full`` (every role the suite needs) or ``restricted``.
            roles: roles to ask the endpoint for (default: :meth:`ConnectorContract.full_roles`).
            owner: owner id (default: a fresh one).
            operations: passed to ``connect`` (``None``: everything the key allows).
            settings: connection settings.
        """
        wanted = tuple(roles) if roles is not None else self.contract.full_roles()
        key = self.credential(purpose, wanted)
        if key is None:
            reason = f"the {self.backend} backend has no {purpose} credential"
            if purpose == "restricted":
                reason += f" ({self.contract.restricted_credential_hint})"
            pytest.skip(reason)
        return await self.hub.connect(
            self.connector_id,
            owner or self.owner(purpose),
            api_key=key,
            operations=operations,
            settings=settings,
            **dict(self.endpoint.connect_options),
        )

    async def connection(self) -> Connection:
        """The run's shared full-permission connection (created on first use)."""
        existing = self._connections.get("full")
        if existing is None:
            existing = self._connections["full"] = await self.connect("full", owner="contract-main")
        return existing

    async def create(self, model: str, data: Mapping[str, Any]) -> UnifiedResource:
        """Create a record through the shared connection and delete it when the test ends."""
        conn = await self.connection()
        created = await conn.resources(model).create(data)
        if created.id is None:
            raise AssertionError(f"{model} create returned a record without id")
        self.created.append((model, created.id))
        return created

    def forget(self, model: str, id: str) -> None:
        """The test deleted this record itself."""
        self.created = [(m, i) for m, i in self.created if (m, i) != (model, id)]

    async def settle(self) -> None:
        """Give a live provider's search index time to see recent writes (no-op elsewhere)."""
        if self.backend == "live" or (self.recording and self.live):
            await anyio.sleep(self.contract.live_settle_seconds)

    async def eventually(self, probe: Callable[[], Awaitable[Any]], done: Callable[[Any], bool], *, what: str) -> Any:
        """Call ``probe`` until ``done(result)``; on live data, poll (search indexes are eventually consistent).

        Raises:
            AssertionError: not done after the polls.
        """
        attempts = self.contract.live_poll_attempts if self.live else 1
        result: Any = None
        for attempt in range(attempts):
            result = await probe()
            if done(result):
                return result
            if attempt + 1 < attempts:
                await self.settle()
        raise AssertionError(f"{what}: not satisfied after {attempts} attempt(s); last result {result!r}")

    async def cleanup(self) -> list[str]:
        """Delete what :meth:`create` created (newest first); return what could not be deleted."""
        leftovers: list[str] = []
        if not self.created:
            return leftovers
        conn = await self.connection()
        for model, id in reversed(self.created):
            try:
                await conn.resources(model).delete(id)
            except (NotFoundError, UnsupportedOperationError):
                continue
            except Exception as exc:  # reported, and the remaining records are still deleted
                leftovers.append(f"{model} {id}: {type(exc).__name__}: {exc}")
        self.created.clear()
        return leftovers


# -- the base class ----------------------------------------------------------------------------------------------


def _test_path(request: pytest.FixtureRequest) -> Path:
    path = Path(str(request.path))
    try:
        return path.relative_to(request.config.rootpath)
    except ValueError:
        return path


def _tag_for(nodeid: str) -> str:
    return TAG_PREFIX + hashlib.sha256(nodeid.encode()).hexdigest()[:8]


def _sanitize(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._\[\]-]+", "_", name)


class ConnectorContract:
    """Base class of connector contract tests (see the module docstring).

    Subclass it in a module whose name starts with ``test_`` and a class named ``Test...``; set
    :attr:`connector_id` and :attr:`cases`, and implement :meth:`sandbox_endpoint` (and, for cassettes and
    live runs, :meth:`recording_endpoint` and :meth:`live_endpoint`).
    """

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.contract, pytest.mark.anyio]

    #: The connector id under test.
    connector_id: ClassVar[str] = ""
    #: The models exercised, one :class:`ModelCase` each (several cases may share a model).
    cases: ClassVar[tuple[ModelCase, ...]] = ()
    #: Backends this connector supports (intersected with the ones selected on the command line).
    backends: ClassVar[tuple[str, ...]] = BACKENDS
    #: Name of the ``unified_connectors`` entry point that must register the connector (``None``: not checked).
    entry_point: ClassVar[str | None] = None
    #: Extra operations whose roles the full credential needs (e.g. provisioning prerequisites).
    extra_operations: ClassVar[tuple[str, ...]] = ()
    #: The provider refuses calls the credential lacks roles for (403); the suite checks the mapping.
    provider_enforces_roles: ClassVar[bool] = True
    #: The origin recorded request URIs are rewritten to (and the base URL of replays).
    cassette_origin: ClassVar[str] = "https://api.provider.test"
    #: Where cassettes live (default ``<rootdir>/cassettes``).
    cassette_root: ClassVar[str | None] = None
    #: Known failures by ``test name``, ``case id`` or ``test name[case id]`` (strict xfail).
    known_issues: ClassVar[Mapping[str, KnownIssue]] = {}
    #: How to get a restricted credential on the live backend (shown when it is missing).
    restricted_credential_hint: ClassVar[str] = "no restricted credential configured"
    #: Seconds between polls of a live search index, and how many polls.
    live_settle_seconds: ClassVar[float] = 2.0
    live_poll_attempts: ClassVar[int] = 15

    # -- what a subclass provides ------------------------------------------------------------------------------

    def registry(self) -> Registry:
        """The plugin registry (default: built-ins plus installed entry points)."""
        from connectors.registry import default_registry

        return default_registry()

    def sandbox_endpoint(self) -> AbstractContextManager[Endpoint]:
        """An in-process fake of the provider (a fresh one per test).

        Raises:
            NotImplementedError: the subclass did not provide one.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement sandbox_endpoint()")

    def recording_endpoint(self) -> AbstractContextManager[Endpoint]:
        """The provider fake over real HTTP, to record cassettes from (deterministic: fixed seed and clock).

        Raises:
            NotImplementedError: this connector has no cassettes.
        """
        raise NotImplementedError(f"{type(self).__name__} has no recording endpoint")

    def live_endpoint(self) -> Endpoint | str:
        """A real account, or the reason the live backend is skipped."""
        return f"{type(self).__name__} has no live backend"

    def replay_endpoint(self) -> Endpoint:
        """What replays use: real HTTP (which vcrpy intercepts) to :attr:`cassette_origin`."""
        return Endpoint(
            transport=None,
            connect_options={"base_url": self.cassette_origin},
            credential=lambda purpose, roles: f"replayed-{purpose}-credential",
            source="replay",
        )

    def hub_settings(self, *, live: bool) -> Settings | None:
        """Deployment settings of the hub when the endpoint gives none (default ``Settings()``).

        Override it to give, when requests do not reach a live org (``live`` false: the sandbox, or any
        replay), a client-side rate budget that never waits on real time.
        """
        return None

    async def prepare(self, run: ContractRun, case: ModelCase) -> dict[str, ResourceRef]:
        """Create the prerequisites of ``case`` (``case.requires``) and return them as references.

        The default provides none; raise ``pytest.skip`` when the backend cannot provide them.
        """
        if case.requires:
            raise NotImplementedError(f"{type(self).__name__}.prepare() must provide {case.requires}")
        return {}

    # -- derived ------------------------------------------------------------------------------------------------

    def connector_class(self) -> type[Connector]:
        """The registered connector class."""
        return self.registry().connector(self.connector_id)

    def full_operations(self) -> tuple[str, ...]:
        """The operations the suite performs with the full credential.

        Unsupported operations are included: their typed error must come from the connector, not from a
        missing role.
        """
        ops = ["whoami", "proxy", *self.extra_operations]
        for case in self.cases:
            prefix = "custom" if case.model.startswith("custom:") else case.model
            ops += [f"{prefix}::{action}" for action in CRUD_ACTIONS]
        return tuple(dict.fromkeys(ops))

    def full_roles(self) -> tuple[str, ...]:
        """Roles of the full credential: exactly what :meth:`full_operations` need."""
        return self.connector_class().roles_for(self.full_operations())

    def case(self, case_id: str) -> ModelCase:
        """The case with id ``case_id``.

        Raises:
            KeyError: no such case.
        """
        for case in self.cases:
            if case.id == case_id:
                return case
        raise KeyError(f"no case {case_id!r}; cases: {[c.id for c in self.cases]}")

    def rerecord_command(self, path: Path | None) -> str:
        """The command that re-records this class's cassettes from the sandbox."""
        target = str(path) if path is not None else "tests/contract"
        return f"python -m pytest {target} -k cassette --record-mode=rewrite"

    # -- pytest plumbing ------------------------------------------------------------------------------------------

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """Parametrize ``case`` (model cases) and ``contract_backend`` (backends) of each contract test."""
        if "case" in metafunc.fixturenames:
            predicate: Callable[[ModelCase], bool] = getattr(metafunc.function, "_contract_cases", lambda c: True)
            chosen = [c for c in self.cases if predicate(c)]
            name = metafunc.function.__name__
            params = [pytest.param(c, id=c.id, marks=self._known_marks(name, c.id)) for c in chosen]
            if not params:
                params = [pytest.param(None, id="none", marks=pytest.mark.skip(reason="no model case applies"))]
            metafunc.parametrize("case", params)
        if "contract_backend" in metafunc.fixturenames:
            allowed = getattr(metafunc.function, "_contract_backends", BACKENDS)
            chosen_backends = [b for b in selected_backends(metafunc.config) if b in self.backends and b in allowed]
            backend_params = [
                pytest.param(b, id=b, marks=[pytest.mark.vcr] if b == "cassette" else []) for b in chosen_backends
            ]
            if not backend_params:
                reason = f"no selected backend applies (supported: {', '.join(self.backends)})"
                backend_params = [pytest.param("none", id="none", marks=pytest.mark.skip(reason=reason))]
            metafunc.parametrize("contract_backend", backend_params)

    def _known_marks(self, test: str, case_id: str) -> list[pytest.MarkDecorator]:
        for key in (f"{test}[{case_id}]", case_id, test):
            issue = self.known_issues.get(key)
            if issue is not None:
                raises = (*issue.raises, CassetteMismatch)
                return [pytest.mark.xfail(reason=issue.reason, strict=True, raises=raises)]
        return []

    @pytest.fixture
    def anyio_backend(self) -> str:
        """Contract tests run on asyncio."""
        return "asyncio"

    @pytest.fixture
    def contract_scrubber(self, request: pytest.FixtureRequest) -> Scrubber:
        """The scrubber of this test's cassette (deterministic for sandbox recordings)."""
        key = os.environ.get(SCRUB_KEY_ENV, "").encode()
        if not key:
            key = SANDBOX_SCRUB_KEY if record_source(request.config) == "sandbox" else secrets.token_bytes(32)
        return Scrubber(key, origin=self.cassette_origin)

    @pytest.fixture
    def vcr_config(self, contract_scrubber: Scrubber) -> dict[str, Any]:
        """pytest-recording's configuration: scrubbing, leak guard, matching on the wire contract."""
        return _vcr_config(contract_scrubber)

    @pytest.fixture
    def vcr_cassette_dir(self, request: pytest.FixtureRequest) -> str:
        """``<cassette_root>/<connector>/<TestClass>``."""
        root = Path(self.cassette_root) if self.cassette_root else Path(request.config.rootpath) / "cassettes"
        return str(root / self.connector_id / type(self).__name__)

    @pytest.fixture
    def default_cassette_name(self, request: pytest.FixtureRequest) -> str:
        """The test name plus its model case (never the backend): ``test_lifecycle[genericContact]``."""
        node = request.node
        callspec = getattr(node, "callspec", None)
        case = callspec.params.get("case") if callspec is not None else None
        name = getattr(node, "originalname", node.name)
        if isinstance(case, ModelCase):
            name = f"{name}[{case.id}]"
        return _sanitize(name)

    @pytest.fixture
    async def contract_run(
        self,
        request: pytest.FixtureRequest,
        contract_backend: str,
        vcr: Any,
        contract_scrubber: Scrubber,
    ) -> AsyncIterator[ContractRun]:
        """The backend of one contract test (see :class:`ContractRun`).

        After the test: deletes what it created, then (when the test itself did not fail, so the report is
        not noise) fails on cassette refusals the connector swallowed and on recorded requests it no longer
        sends.
        """
        failed_before = request.session.testsfailed
        with ExitStack() as stack:
            run = await self._open_run(request, contract_backend, vcr, contract_scrubber, stack)
            try:
                yield run
            finally:
                try:
                    leftovers = await run.cleanup()
                finally:
                    await run.hub.aclose()
            test_failed = request.session.testsfailed > failed_before
            problems = [] if test_failed else self._replay_problems(run)
            if leftovers:
                problems.append("records the run could not delete (remove them by hand): " + "; ".join(leftovers))
            if problems:
                pytest.fail("\n".join(problems), pytrace=False)

    async def _open_run(
        self, request: pytest.FixtureRequest, backend: str, cassette: Any, scrubber: Scrubber, stack: ExitStack
    ) -> ContractRun:
        nodeid = request.node.nodeid.replace(f"-{backend}]", "]").replace(f"[{backend}]", "")
        replaying = recording = False
        if backend == "sandbox":
            endpoint = stack.enter_context(self.sandbox_endpoint())
            source, tag = "sandbox", _tag_for(nodeid)
        elif backend == "live":
            found = self.live_endpoint()
            if isinstance(found, str):
                pytest.skip(found)
            endpoint, source, tag = found, "live", TAG_PREFIX + secrets.token_hex(4)
        elif backend == "cassette":
            endpoint, source, tag, replaying, recording = self._cassette_endpoint(request, cassette, nodeid, stack)
        else:
            raise pytest.UsageError(f"unknown contract backend {backend!r}")
        for value in endpoint.secrets:
            scrubber.add_secret(value)
        reaches_live = backend == "live" or (recording and source == "live")
        from connectors.runtime.connection import Connectors
        from connectors.runtime.secrets import SecretBox
        from connectors.runtime.store import ConnectionStore
        from connectors.settings import Settings

        hint = self.rerecord_command(_test_path(request))
        wire = WireLog(endpoint.transport, rerecord_hint=hint)
        store = ConnectionStore("sqlite:///:memory:", secret_box=SecretBox(os.urandom(32)))
        hub = Connectors(
            settings=endpoint.settings or self.hub_settings(live=reaches_live) or Settings(),
            store=store,
            registry=self.registry(),
            transport=wire,
        )
        # The hub does not own a store it was given: close it with the run.
        stack.callback(store.close)
        return ContractRun(
            contract=self,
            backend=backend,
            source=source,
            tag=tag,
            hub=hub,
            wire=wire,
            endpoint=endpoint,
            scrubber=scrubber,
            replaying=replaying,
            recording=recording,
            cassette=cassette,
        )

    def _cassette_endpoint(
        self, request: pytest.FixtureRequest, cassette: Any, nodeid: str, stack: ExitStack
    ) -> tuple[Endpoint, str, str, bool, bool]:
        if cassette is None:
            pytest.skip("recording is disabled (--disable-recording)")
        from vcr.errors import MissingMetadataError

        path = Path(cassette._path)
        hint = self.rerecord_command(_test_path(request))
        if cassette.write_protected:
            if not path.exists():
                pytest.fail(f"no cassette {path}; record it from the sandbox with:\n  {hint}", pytrace=False)
            try:
                source = str(cassette.get_metadata("source", None))
                tag = str(cassette.get_metadata("tag", None))
            except MissingMetadataError:
                pytest.fail(f"cassette {path} has no contract metadata; re-record it with:\n  {hint}", pytrace=False)
            return self.replay_endpoint(), source, tag, True, False
        source = record_source(request.config)
        if source == "live":
            found = self.live_endpoint()
            if isinstance(found, str):
                pytest.skip(f"cannot record from the live backend: {found}")
            endpoint = found
            tag = TAG_PREFIX + secrets.token_hex(4)
        else:
            try:
                endpoint = stack.enter_context(self.recording_endpoint())
            except NotImplementedError as exc:
                pytest.skip(str(exc))
            tag = _tag_for(nodeid)
        metadata = {
            "source": source,
            "recorded_from": endpoint.description or source,
            "connector": self.connector_id,
            "tag": tag,
            "suite": f"unified-connectors {__version__} contract suite ({type(self).__name__})",
            "scrubbed": "credentials, tokens, secrets; emails/phones/person names outside the run's own records",
            **dict(endpoint.metadata),
        }
        for key, value in metadata.items():
            cassette.get_metadata(key, value)
        return endpoint, source, tag, False, True

    def _replay_problems(self, run: ContractRun) -> list[str]:
        problems = [str(m) for m in run.wire.mismatches]
        cassette = run.cassette
        if run.replaying and cassette is not None and not problems:
            missing = unplayed(cassette)
            if missing:
                problems.append(
                    "wire contract changed: the connector no longer sends these recorded requests:\n  "
                    + "\n  ".join(missing)
                    + f"\nIf the change is intended, re-record:\n  {run.wire.rerecord_hint}"
                )
        return problems

    # -- the contract: registration ---------------------------------------------------------------------------

    def test_registration(self) -> None:
        """The connector is registered (by its entry point when declared) and maps every case's model."""
        from connectors.runtime.connector import Connector

        registry = self.registry()
        assert self.connector_id, f"{type(self).__name__}.connector_id is not set"
        cls = registry.connector(self.connector_id)
        assert issubclass(cls, Connector)
        assert cls.id == self.connector_id
        assert isinstance(cls.display_name, str), "display_name must be a str"
        assert cls.display_name.strip(), "display_name must not be empty"
        assert cls.auth_types, "auth_types must not be empty"
        assert cls.auth_types <= {"api_key", "oauth2"}, f"bad auth_types {cls.auth_types!r}"
        assert self.cases, f"{type(self).__name__}.cases is empty: the suite would exercise nothing"
        for case in self.cases:
            mapper = registry.mapper(self.connector_id, case.model)
            expected = "custom" if case.model.startswith("custom:") and mapper.model == "custom" else case.model
            assert mapper.model == expected, f"mapper for {case.model} says it maps {mapper.model!r}"
            model_class(case.model)  # a unified model id
        if self.entry_point is not None:
            from importlib.metadata import entry_points

            from connectors.hookspecs import NAME

            eps = {ep.name: ep for ep in entry_points(group=NAME)}
            assert self.entry_point in eps, f"no {NAME!r} entry point named {self.entry_point!r} is installed"
            from connectors.registry import build_registry

            target = eps[self.entry_point].load()
            alone = build_registry(load_entrypoints=False, builtins=False, plugins=[target])
            assert self.connector_id in alone.connectors, (
                f"entry point {self.entry_point!r} does not register connector {self.connector_id!r}"
            )

    def test_operation_table(self) -> None:
        """Every case's model declares the CRUD operations with well-formed role requirements."""
        cls = self.connector_class()
        table = cls.operations()
        for name, op in table.items():
            assert op.name == name, f"operation {name!r} is registered under another name ({op.name!r})"
            for choice in op.requires:
                assert choice, f"{name}: an empty role choice"
                assert all(isinstance(r, str) and r.strip() for r in choice), f"{name}: bad {choice!r}"
        for required in ("whoami", "proxy"):
            assert required in table, f"{self.connector_id} has no {required!r} operation"
        for case in self.cases:
            prefix = "custom" if case.model.startswith("custom:") else case.model
            for action in CRUD_ACTIONS:
                assert f"{prefix}::{action}" in table, f"{self.connector_id} does not declare {prefix}::{action}"
        roles = cls.roles_for(self.full_operations())
        assert list(roles) == sorted(set(roles)), "roles_for() must return sorted unique roles"
        with pytest.raises(KeyError, match="did you mean"):
            cls.operation(f"{self.cases[0].model}::lst")

    # -- the contract: connecting ------------------------------------------------------------------------------

    async def test_connect_and_identify(self, contract_run: ContractRun) -> None:
        """Connect with a key, identify the account, reopen it; the key never shows in reprs or dicts."""
        run = contract_run
        conn = await run.connect("full", owner="contract-identify")
        info = conn.info
        assert info.status == "active"
        assert info.connector_id == self.connector_id
        assert info.owner_id == "contract-identify"
        full_ops = set(self.full_operations())
        assert full_ops <= set(info.operations), f"missing operations: {sorted(full_ops - set(info.operations))}"
        identity = await conn.whoami()
        if info.granted_roles is not None:
            assert identity.granted_roles is None or set(identity.granted_roles) == set(info.granted_roles)
        again = await run.hub.get(self.connector_id, "contract-identify")
        assert again.id == conn.id
        listed = await run.hub.list(owner_id="contract-identify")
        assert [i.id for i in listed] == [conn.id]
        for text in (repr(conn), repr(run.hub), str(info.to_dict()), repr(conn.session), repr(identity)):
            for secret in run.scrubber.secrets:
                assert secret not in text, "a credential leaked into a repr or dict"

    # -- the contract: model operations ----------------------------------------------------------------------

    def _writable(self, run: ContractRun, case: ModelCase) -> bool:
        return case.sample is not None and case.supports("create") and (not run.live or case.live_writes)

    @_case_filter(lambda case: True)
    async def test_lifecycle(self, contract_run: ContractRun, case: ModelCase) -> None:
        """Create, retrieve, find, update (PATCH semantics), delete, each mapped both ways without loss.

        Unsupported actions raise ``UnsupportedOperationError`` before any request. Read-only models (or models
        the live backend must not write) are read instead: a list page and a retrieve of its first record.
        """
        run = contract_run
        conn = await run.connection()
        resources = conn.resources(case.model)
        refs = await self.prepare(run, case)
        ctx = SampleContext(run.tag, 0, refs)
        if not self._writable(run, case):
            page = await resources.list(limit=case.page_size)
            assert len(page.data) <= case.page_size
            if page.data:
                first = page.data[0]
                assert first.id is not None
                again = await resources.retrieve(first.id)
                assert again.id == first.id
                assert_round_trip(first, again, ignore=case.ignore | {"raw"}, what="list item vs retrieve")
        else:
            assert case.sample is not None
            sent = _validate(case.model, case.sample(ctx))
            created = await run.create(case.model, case.sample(ctx))
            assert created.id, "create returned no id"
            assert_round_trip(sent, created, ignore=case.ignore, what="create")
            fetched = await resources.retrieve(created.id)
            assert fetched.id == created.id
            assert_round_trip(sent, fetched, ignore=case.ignore, what="retrieve after create")
            found = await run.eventually(
                lambda: _collect(resources, {"ids": [created.id]}, case),
                lambda result: created.id in result[0],
                what=f"list(filters={{'ids': [{created.id!r}]}})",
            )
            assert found[0] == [created.id], f"list(filters={{'ids': [{created.id!r}]}}) returned {found[0]}"
            if case.change is not None and case.supports("update"):
                change = dict(case.change(ctx))
                partial_sent = _validate(case.model, {**dict(case.sample(ctx)), **change})
                updated = await resources.update(created.id, change)
                assert updated.id == created.id
                assert_round_trip(partial_sent, updated, ignore=case.ignore, what="update (PATCH keeps the rest)")
                refetched = await resources.retrieve(created.id)
                assert_round_trip(partial_sent, refetched, ignore=case.ignore, what="retrieve after update")
            if case.supports("delete"):
                await resources.delete(created.id)
                run.forget(case.model, created.id)
                with pytest.raises(NotFoundError):
                    await resources.retrieve(created.id)
        for action in sorted(case.unsupported & set(CRUD_ACTIONS)):
            mark = run.wire.mark()
            with pytest.raises(UnsupportedOperationError) as caught:
                await _attempt(resources, action, case, ctx)
            assert caught.value.operation.endswith(f"::{action}"), caught.value.operation
            assert run.wire.since(mark) == [], f"{case.model}::{action} is unsupported but sent requests"

    @_case_filter(lambda case: True)
    async def test_pagination(self, contract_run: ContractRun, case: ModelCase) -> None:
        """Paging ends, never repeats or skips a record, and ``iter`` yields what ``list`` pages yield."""
        run = contract_run
        conn = await run.connection()
        resources = conn.resources(case.model)
        filters: dict[str, Any] = {}
        expected: set[str] | None = None
        if case.tag_filter is not None:
            if not self._writable(run, case):
                pytest.skip(f"{case.model}: the tagged records cannot be created on this backend")
            refs = await self.prepare(run, case)
            ids = []
            for index in range(case.count):
                assert case.sample is not None
                created = await run.create(case.model, case.sample(SampleContext(run.tag, index, refs)))
                assert created.id is not None
                ids.append(created.id)
            wanted = expected = set(ids)
            filters = dict(case.tag_filter(SampleContext(run.tag, 0, refs)))
            pages_ids, pages = await run.eventually(
                lambda: _collect(resources, filters, case),
                lambda result: set(result[0]) >= wanted,
                what=f"{case.model} search sees the {case.count} new records",
            )
        else:
            pages_ids, pages = await _collect(resources, filters, case)
        assert len(pages_ids) == len(set(pages_ids)), f"a record was returned twice: {pages_ids}"
        if expected is not None:
            assert set(pages_ids) == expected, (
                f"paging returned {sorted(pages_ids)}, expected exactly the {len(expected)} tagged records"
            )
            assert pages >= math.ceil(len(expected) / case.page_size), "too few pages for the page size"
            assert pages <= math.ceil(len(expected) / case.page_size) + 1, f"{pages} pages for {len(expected)}"
        iterated = [r.id async for r in resources.iter(filters=filters or None, page_size=case.page_size)]
        assert iterated == pages_ids, "iter() and list() pages disagree"

    # -- the contract: errors -----------------------------------------------------------------------------------

    async def test_error_mapping(self, contract_run: ContractRun) -> None:
        """Missing records, invalid input, cursors and filters become typed errors; invalid input sends nothing."""
        run = contract_run
        conn = await run.connection()
        for case in self.cases:
            resources = conn.resources(case.model)
            with pytest.raises(NotFoundError) as missing:
                await resources.retrieve(case.missing_id)
            assert getattr(missing.value, "status_code", 404) == 404
            mark = run.wire.mark()
            with pytest.raises(MappingError) as bad:
                await resources.create(_invalid_payload(run, case))
            assert bad.value.model == case.model, str(bad.value)
            if case.sample is not None and not case.requires:
                assert bad.value.field == "noSuchField", str(bad.value)
            with pytest.raises(InvalidCursorError):
                await resources.list(cursor="not-a-cursor", limit=case.page_size)
            with pytest.raises(QueryError) as query:
                await resources.list(filters={"noSuchFilter": "x"}, limit=case.page_size)
            assert "noSuchFilter" in str(query.value)
            sent = run.wire.since(mark)
            assert sent == [], f"{case.model}: invalid input reached the provider: {_describe_all(sent)}"

    async def test_bad_credentials(self, contract_run: ContractRun) -> None:
        """A refused key raises ``AuthenticationError``, stores nothing and never echoes the key."""
        run = contract_run
        bad_key = "uc-contract-invalid-credential-0000"
        with pytest.raises(AuthenticationError) as caught:
            await run.hub.connect(
                self.connector_id, "contract-bad-key", api_key=bad_key, **dict(run.endpoint.connect_options)
            )
        assert bad_key not in str(caught.value)
        assert await run.hub.list(owner_id="contract-bad-key") == []

    async def test_permissions(self, contract_run: ContractRun) -> None:
        """Missing roles fail early, a provider 403 maps to the same error, refused operations store nothing.

        The early check sends nothing; the 403 check lies about the roles (``role_overrides``) so the
        request reaches the provider.
        """
        run = contract_run
        cls = self.connector_class()
        case = next((c for c in self.cases if c.sample is not None and c.supports("create")), None)
        if case is None:
            pytest.skip("no writable model case")
        prefix = "custom" if case.model.startswith("custom:") else case.model
        read_roles = cls.roles_for([f"{prefix}::list", f"{prefix}::retrieve"])
        create_op = f"{prefix}::create"
        with pytest.raises(InsufficientPermissionsError) as refused:
            await run.connect("restricted", roles=read_roles, owner="contract-refused", operations=[create_op])
        assert create_op in refused.value.operation
        assert await run.hub.list(owner_id="contract-refused") == []
        conn = await run.connect("restricted", roles=read_roles, owner="contract-restricted")
        granted = set(conn.info.granted_roles or ())
        assert create_op not in conn.info.operations
        missing = cls.operation(create_op).missing(granted)
        assert missing, f"the restricted credential holds every role of {create_op}"
        refs = await self.prepare(run, case)
        assert case.sample is not None
        payload = case.sample(SampleContext(run.tag, 0, refs))
        mark = run.wire.mark()
        with pytest.raises(InsufficientPermissionsError) as early:
            await conn.resources(case.model).create(payload)
        assert early.value.operation == create_op
        assert set(early.value.missing_roles) == set(missing), early.value.missing_roles
        assert run.wire.since(mark) == [], "the early role check let a request through"
        with pytest.raises(InsufficientPermissionsError):
            conn.require(create_op)
        if not self.provider_enforces_roles:
            return
        # Claim the read roles suffice, so the request reaches the provider and comes back 403.
        overrides = {create_op: [[r] for r in read_roles]}
        lying = await run.connect(
            "restricted", roles=read_roles, owner="contract-403", settings={"role_overrides": overrides}
        )
        with pytest.raises(InsufficientPermissionsError) as denied:
            await lying.resources(case.model).create(payload)
        assert denied.value.operation == create_op
        assert isinstance(denied.value.__cause__, PermissionDeniedError), repr(denied.value.__cause__)
        assert denied.value.__cause__.status_code == 403

    # -- the contract: the wire contract itself -----------------------------------------------------------------

    @only_backends("cassette")
    async def test_replay_rejects_changed_requests(self, contract_run: ContractRun) -> None:
        """Replaying refuses a request whose query, body or path differs from the recording."""
        run = contract_run
        case = next((c for c in self.cases if c.sample is not None and c.supports("create")), self.cases[0])
        conn = await run.connection()
        resources = conn.resources(case.model)
        refs = await self.prepare(run, case)
        ctx = SampleContext(run.tag, 0, refs)
        if run.replaying:
            with run.wire.expect_mismatch() as changed_query:
                await resources.list(limit=case.page_size + 1)
            assert "query" in str(changed_query[0]), str(changed_query[0])
            with run.wire.expect_mismatch() as changed_path:
                await resources.retrieve(case.missing_id[:-1] + "1")
            assert "path" in str(changed_path[0]), str(changed_path[0])
            if case.sample is not None:
                altered = {**dict(case.sample(ctx)), **dict(case.change(ctx) if case.change else {})}
                if altered != dict(case.sample(ctx)):
                    with run.wire.expect_mismatch() as changed_body:
                        await resources.create(altered)
                    assert "body" in str(changed_body[0]), str(changed_body[0])
        page = await resources.list(limit=case.page_size)
        assert len(page.data) <= case.page_size
        if case.sample is not None:
            created = await run.create(case.model, case.sample(ctx))
            assert created.id is not None
            await resources.retrieve(created.id)


async def _collect(resources: Any, filters: Mapping[str, Any], case: ModelCase) -> tuple[list[str], int]:
    ids: list[str] = []
    cursor: str | None = None
    seen_cursors: set[str] = set()
    pages = 0
    while True:
        page = await resources.list(limit=case.page_size, cursor=cursor, filters=dict(filters) or None)
        pages += 1
        assert len(page.data) <= case.page_size, f"page {pages} has {len(page.data)} > {case.page_size} records"
        ids += [str(r.id) for r in page.data]
        if page.next is None:
            return ids, pages
        assert page.next not in seen_cursors, f"cursor repeated on page {pages}: pagination loops"
        seen_cursors.add(page.next)
        assert pages < case.max_pages, f"{case.model}: still paging after {case.max_pages} pages"
        cursor = page.next


async def _attempt(resources: Any, action: str, case: ModelCase, ctx: SampleContext) -> None:
    if action == "delete":
        await resources.delete(case.missing_id)
    elif action == "update":
        await resources.update(case.missing_id, dict(case.change(ctx)) if case.change else {})
    elif action == "create":
        await resources.create(dict(case.sample(ctx)) if case.sample else {})
    elif action == "retrieve":
        await resources.retrieve(case.missing_id)
    else:
        await resources.list(limit=case.page_size)


def _validate(model: str, payload: Mapping[str, Any]) -> UnifiedResource:
    data = dict(payload)
    if model.startswith("custom:"):
        data.setdefault("objectType", model.split(":", 1)[1])
    return model_class(model).model_validate(data)


def _invalid_payload(run: ContractRun, case: ModelCase) -> dict[str, Any]:
    if case.sample is not None and not case.requires:
        return {**dict(case.sample(SampleContext(run.tag))), "noSuchField": "x"}
    return {"noSuchField": "x"}


def _describe_all(requests: Sequence[WireRequest]) -> str:
    return ", ".join(str(r) for r in requests)
