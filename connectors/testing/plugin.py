"""pytest plugin of the contract suite (``pytest11`` entry point ``unified_connectors_contract``).

It adds two options and a report header; the contract itself lives in
:class:`~connectors.testing.ConnectorContract` and works without this plugin (the options then come from the
environment only):

``--contract-backend NAME[,NAME]`` (``$CONNECTORS_CONTRACT_BACKENDS``)
    ``sandbox``, ``cassette``, ``live`` or ``all`` (the default).
``--contract-record-from sandbox|live`` (``$CONNECTORS_CONTRACT_RECORD_FROM``)
    where ``--record-mode=once|rewrite|all`` records cassettes from (default ``sandbox``).

Importing this module is cheap: it imports nothing from the package until pytest calls it.
"""

from __future__ import annotations

import os

import pytest

__all__ = ["pytest_addoption", "pytest_configure", "pytest_report_header"]


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--contract-backend`` and ``--contract-record-from``."""
    group = parser.getgroup("contract", "unified-connectors contract suite")
    group.addoption(
        "--contract-backend",
        action="append",
        dest="contract_backend",
        default=None,
        metavar="NAME",
        help="contract backends to run: sandbox, cassette, live or all (repeatable or comma-separated; "
        "default: all; env CONNECTORS_CONTRACT_BACKENDS)",
    )
    group.addoption(
        "--contract-record-from",
        dest="contract_record_from",
        default=None,
        choices=("sandbox", "live"),
        help="record cassettes from the sandbox (default) or the live org (env CONNECTORS_CONTRACT_RECORD_FROM)",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``contract`` marker."""
    config.addinivalue_line("markers", "contract: the connector contract suite")


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Say which contract backends run and where cassettes are recorded from."""
    from connectors.testing.contract import record_source, selected_backends

    backends = selected_backends(config)
    record_mode = config.getoption("--record-mode", default=None) or "none"
    parts = []
    for name in backends:
        if name == "cassette":
            if record_mode == "none":
                parts.append("cassette (replay only)")
            else:
                parts.append(f"cassette (recording from {record_source(config)}, --record-mode={record_mode})")
        elif name == "live":
            configured = bool(os.environ.get("KUSTOMER_API_KEY"))
            parts.append("live" if configured else "live (skipped without credentials, e.g. KUSTOMER_API_KEY)")
        else:
            parts.append(name)
    return [f"contract backends: {', '.join(parts)}"]
