"""Shared pieces of the reliability suite: the session tally, sandbox and hub settings, fault mixes, helpers.

Not a test module: ``conftest.py`` puts this folder on ``sys.path`` so that test modules (imported with
``--import-mode=importlib``) and spawned worker processes can ``import _reliability``.
"""

from __future__ import annotations

import copy
import logging
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import httpx
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from connectors import Settings
from connectors.kustomer.sandbox import Sandbox, SandboxSettings
from connectors.kustomer.sandbox.faults import FaultDecision

__all__ = [
    "CLIENT_ID",
    "CLIENT_SECRET",
    "FAULTS",
    "HUGE",
    "ODD_STRINGS",
    "RATE_WINDOW",
    "REDIRECT_URI",
    "FaultCounter",
    "LogCapture",
    "Tally",
    "capture_logs",
    "consent",
    "fuzz",
    "hub_settings",
    "json_of",
    "json_values",
    "mutations",
    "quiet_settings",
    "scalars",
]

CLIENT_ID: Final = "reliability-client"
CLIENT_SECRET: Final = "reliability-client-secret-7f3a9c"
REDIRECT_URI: Final = "https://app.example.com/oauth/callback"

RATE_WINDOW: Final = 1.0
"""Seconds of the rate window of the suite's sandboxes (compressed: a 429 burst makes clients wait < 1 s)."""
HUGE: Final = 10_000_000
"""A budget per window nobody reaches (faults, not the rate limiter, are under test)."""

FAULTS: Final[Mapping[str, Any]] = {
    "fault_500_rate": 0.04,
    "fault_502_rate": 0.03,
    "fault_503_rate": 0.03,  # 10% 5xx in all
    "drop_connection_rate": 0.02,
    "slow_response_rate": 0.03,
    "slow_response_ms": 40.0,
    "burst_429_rate": 0.01,
    "burst_429_length": 3,
}
"""The issue's fault mix: 10% 5xx, 2% dropped connections, slow responses and bursts of 429s."""


def fuzz(examples: int, *, shrink: bool = True) -> settings:
    """Hypothesis settings of the suite: ``examples`` examples, derandomized (reproducible in CI), no deadline.

    ``shrink=False`` for fuzzers whose examples do I/O: a failure is reported as found, not minimised (which
    would rerun the example hundreds of times).
    """
    phases = list(Phase) if shrink else [Phase.explicit, Phase.reuse, Phase.generate]
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=phases,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


# -- mutation fuzzing -------------------------------------------------------------------------------------------

ODD_STRINGS: Final[list[str]] = [
    *("", " ", "\x00", "\u202e", "null", "2026-13-45T99:99:99Z", "0" * 24, "../..", "a" * 5000),
]
"""Strings that broke parsers before: empty, NUL, right-to-left override, bad dates, path tricks, long."""
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(ODD_STRINGS)
)
"""Odd JSON scalars."""

NESTED: list[Any] = [
    {},
    [],
    [None],
    {"data": None},
    {"data": {"type": "customer"}},
    {"data": [{"id": 7}]},
    {"id": None, "type": None},
    [{"email": None}, {"phone": 5}],
    {"links": {"self": 1}},
    [[[[]]]],
    {"": {"": {"": ""}}},
    {"attributes": "x", "relationships": []},
]
"""Nested odd JSON (drawn whole: recursive strategies cost more than the mappers they feed)."""


def json_of(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """JSON values: ``leaves``, odd nested values, and flat lists and objects of leaves."""
    return (
        leaves
        | st.sampled_from(NESTED)
        | st.lists(leaves, max_size=3)
        | st.dictionaries(st.text(max_size=10), leaves, max_size=3)
    )


json_values = json_of(scalars)
"""Odd JSON values of every type."""
OPERATIONS = ("delete", "null", "replace", "retype", "add_key", "wrap_list", "empty")


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*prefix, index))


def _retype(value: Any) -> Any:
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    if isinstance(value, str):
        return len(value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    return {}


def _mutate(doc: Any, path: tuple[Any, ...], op: str, value: Any) -> Any:
    if not path:
        return value if op in ("replace", "retype") else doc
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if op == "delete" and isinstance(parent, dict):
        del parent[last]
    elif op == "delete" and isinstance(parent, list):
        parent.pop(last)
    elif op == "null":
        parent[last] = None
    elif op == "replace":
        parent[last] = value
    elif op == "retype":
        parent[last] = _retype(parent[last])
    elif op == "add_key" and isinstance(parent[last], dict):
        parent[last][str(value)[:20]] = value
    elif op == "wrap_list":
        parent[last] = [parent[last], value]
    elif op == "empty":
        current = parent[last]
        parent[last] = type(current)() if isinstance(current, dict | list | str) else 0
    return doc


@st.composite
def mutations(draw: st.DrawFn, seed: Any, values: st.SearchStrategy[Any] = json_values) -> Any:
    """A deep copy of ``seed`` (JSON) with 1 to 6 random mutations at random paths."""
    doc: Any = copy.deepcopy(seed)
    for _ in range(draw(st.integers(1, 6))):
        where = draw(st.sampled_from(list(_paths(doc))))
        doc = _mutate(doc, where, draw(st.sampled_from(OPERATIONS)), copy.deepcopy(draw(values)))
    return doc


# -- the tally --------------------------------------------------------------------------------------------------


@dataclass
class Tally:
    """What the suite did, summed over the session (printed at the end by ``conftest.py``).

    Attributes:
        faults: injected faults by kind (``500``, ``drop``, ``burst``, ``after_write_502``, ``slow``...).
        races: competing actors run in race scenarios (processes, workers, tasks).
        tried: inputs tried, by area (fuzz examples, records exported or pushed, attack attempts...).
        rejected: inputs refused with a typed error or a 4xx, by area.
        lost: valid inputs lost, duplicated, or hostile inputs accepted, by area (must stay 0).
        notes: measured figures worth showing, one line per scenario.
    """

    faults: Counter[str] = field(default_factory=Counter)
    races: int = 0
    tried: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    lost: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)

    def add_faults(self, counters: Mapping[str, int], *, slow: int = 0) -> int:
        """Add a sandbox's ``faults.*`` counters (and ``slow`` slow responses); return how many that was."""
        total = 0
        for key, value in counters.items():
            if key.startswith("faults.") and value:
                self.faults[key.removeprefix("faults.")] += value
                total += value
        if slow:
            self.faults["slow"] += slow
            total += slow
        return total

    def record(self, area: str, *, tried: int = 0, rejected: int = 0, lost: int = 0) -> None:
        """Count inputs of one area."""
        self.tried[area] += tried
        self.rejected[area] += rejected
        self.lost[area] += lost

    def note(self, text: str) -> None:
        """Keep a line for the summary (and print it, for ``-s`` runs)."""
        self.notes.append(text)
        print(f"\n[reliability] {text}")

    @property
    def total_lost(self) -> int:
        """Inputs lost over the session."""
        return sum(self.lost.values())

    def lines(self) -> list[str]:
        """The summary, as printed."""
        out = [
            f"faults injected: {sum(self.faults.values())} "
            f"({', '.join(f'{k} {v}' for k, v in sorted(self.faults.items())) or 'none'})",
            f"races run: {self.races}",
            f"inputs tried: {sum(self.tried.values())}",
            f"rejected: {sum(self.rejected.values())}",
            f"lost: {self.total_lost} (must be 0)",
        ]
        width = max((len(a) for a in self.tried), default=4)
        out.append(f"  {'area':<{width}}  {'tried':>8}  {'rejected':>8}  {'lost':>4}")
        for area in sorted(self.tried):
            out.append(f"  {area:<{width}}  {self.tried[area]:>8}  {self.rejected[area]:>8}  {self.lost[area]:>4}")
        out.extend(f"  - {line}" for line in self.notes)
        return out


# -- sandboxes and hubs -----------------------------------------------------------------------------------------


def quiet_settings(**overrides: Any) -> SandboxSettings:
    """A small sandbox whose budgets never throttle and whose bulk jobs finish at once."""
    base: dict[str, Any] = {
        "customers": 20,
        "companies": 4,
        "users": 3,
        "teams": 1,
        "conversations_per_customer": 0.0,
        "messages_per_conversation": 0.0,
        "notes_per_conversation": 0.0,
        "orders_per_customer": 0.0,
        "rate_limit_per_minute": HUGE,
        "search_limit_per_minute": HUGE,
        "rate_window_seconds": RATE_WINDOW,
        "bulk_processing_seconds": 0.0,
    }
    base.update(overrides)
    return SandboxSettings(**base)


def hub_settings(**kustomer: Any) -> Settings:
    """Hub settings matching :func:`quiet_settings`: the suite's OAuth client and the compressed rate window."""
    values: dict[str, Any] = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "rate_limit": HUGE,
        "search_limit": HUGE,
        "rate_window": RATE_WINDOW,
    }
    values.update(kustomer)
    return Settings(kustomer=values)


class FaultCounter:
    """Wraps a sandbox's fault injector to count slow responses (the sandbox counts the other kinds itself).

    Args:
        sb: the sandbox.
    """

    def __init__(self, sb: Sandbox) -> None:
        self.slow = 0
        inner = sb.faults.decide

        def decide(settings: SandboxSettings, *, method: str, path: str) -> FaultDecision:
            decision = inner(settings, method=method, path=path)
            if decision.slow_seconds > 0:
                self.slow += 1
            return decision

        sb.faults.decide = decide  # type: ignore[method-assign]


# -- logs -------------------------------------------------------------------------------------------------------


class LogCapture(logging.Handler):
    """Every record of every logger, formatted with its traceback, kept in memory.

    Attributes:
        paused: while true, records are dropped (the test itself is acting, e.g. playing the browser).
        ignore: logger name prefixes of test tooling (vcrpy) whose records are dropped.
    """

    def __init__(self, ignore: tuple[str, ...] = ("vcr",)) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.paused = False
        self.ignore = ignore
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the formatted record (arguments interpolated, traceback included)."""
        if self.paused or record.name.startswith(self.ignore):
            return
        self.lines.append(self.format(record))

    def text(self) -> str:
        """All lines."""
        return "\n".join(self.lines)


@contextmanager
def capture_logs(names: Iterable[str] = ("",)) -> Iterator[LogCapture]:
    """Capture every record at DEBUG of the loggers ``names`` (the root by default) while the block runs."""
    handler = LogCapture()
    loggers = [logging.getLogger(n) for n in names]
    saved = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        for lg, level in saved:
            lg.removeHandler(handler)
            lg.setLevel(level)


# -- OAuth consent ----------------------------------------------------------------------------------------------


async def consent(
    url: str, *, approve: bool = True, transport: httpx.AsyncBaseTransport | None = None
) -> dict[str, str]:
    """Play the user on the sandbox's consent page: open it, press Approve (or Deny); return the redirect's query."""
    async with httpx.AsyncClient(transport=transport, follow_redirects=False) as client:
        page = await client.get(url)
        assert page.status_code == 200, page.text
        request_id = re.search(r'name="request_id" value="([^"]+)"', page.text)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert request_id and csrf, page.text
        parts = urlsplit(url)
        decision = await client.post(
            f"{parts.scheme}://{parts.netloc}{parts.path}",
            data={
                "request_id": request_id.group(1),
                "csrf_token": csrf.group(1),
                "decision": "approve" if approve else "deny",
            },
        )
    assert decision.status_code == 302, decision.text
    return {k: v[0] for k, v in parse_qs(urlsplit(decision.headers["location"]).query).items()}
