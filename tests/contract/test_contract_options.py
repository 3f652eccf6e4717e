"""Backend selection, record source, known issues and cassette names of the contract base class."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.errors import BadRequestError
from connectors.testing import BACKENDS, CassetteMismatch, KnownIssue, ModelCase, only_backends, selected_backends
from connectors.testing.contract import ConnectorContract, record_source

pytestmark = pytest.mark.contract


class FakeConfig:
    def __init__(self, **options: Any) -> None:
        self.options = options

    def getoption(self, name: str, default: Any = None) -> Any:
        return self.options.get(name, default)


@pytest.mark.parametrize(
    ("option", "env", "expected"),
    [
        (None, None, BACKENDS),
        (["all"], None, BACKENDS),
        (["sandbox"], "live", ("sandbox",)),  # the command line wins over the environment
        (["live,sandbox"], None, ("sandbox", "live")),  # always in the canonical order
        (["cassette", "sandbox"], None, ("sandbox", "cassette")),
        (None, "cassette", ("cassette",)),
    ],
)
def test_backend_selection(monkeypatch: pytest.MonkeyPatch, option: Any, env: str | None, expected: Any) -> None:
    if env is None:
        monkeypatch.delenv("CONNECTORS_CONTRACT_BACKENDS", raising=False)
    else:
        monkeypatch.setenv("CONNECTORS_CONTRACT_BACKENDS", env)
    assert selected_backends(FakeConfig(contract_backend=option)) == expected  # type: ignore[arg-type]


def test_unknown_backends_and_sources_are_usage_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONNECTORS_CONTRACT_RECORD_FROM", raising=False)
    with pytest.raises(pytest.UsageError, match="unknown contract backend"):
        selected_backends(FakeConfig(contract_backend=["sandbx"]))  # type: ignore[arg-type]
    assert record_source(FakeConfig()) == "sandbox"  # type: ignore[arg-type]
    monkeypatch.setenv("CONNECTORS_CONTRACT_RECORD_FROM", "live")
    assert record_source(FakeConfig()) == "live"  # type: ignore[arg-type]
    with pytest.raises(pytest.UsageError, match="record-from"):
        record_source(FakeConfig(contract_record_from="prod"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown backend"):
        only_backends("cassettes")


def test_known_issues_are_strict_xfails_that_also_accept_a_stale_cassette() -> None:
    class Contract(ConnectorContract):
        known_issues = {"test_pagination[genericContact]": KnownIssue("broken", raises=(BadRequestError,))}

    marks = Contract()._known_marks("test_pagination", "genericContact")
    assert len(marks) == 1
    mark = marks[0].mark
    assert mark.name == "xfail" and mark.kwargs["strict"] is True
    assert mark.kwargs["raises"] == (BadRequestError, CassetteMismatch)
    assert Contract()._known_marks("test_lifecycle", "genericContact") == []


def test_model_case_ids_and_support() -> None:
    case = ModelCase("crmEngagement", case_id="crmEngagement-note", unsupported=frozenset({"delete"}))
    assert case.id == "crmEngagement-note" and not case.supports("delete") and case.supports("create")
    assert ModelCase("genericContact").id == "genericContact"
