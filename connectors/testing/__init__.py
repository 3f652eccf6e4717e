"""Test tooling for connectors: the contract suite, cassette scrubbing and auditing, the wire log.

::

    from connectors.testing import ConnectorContract, ModelCase
    from connectors.testing.kustomer import KustomerContract

    class TestKustomer(KustomerContract):        # the whole Kustomer contract, on every backend
        pass

Needs the ``testing`` tools (pytest, anyio, vcrpy, pytest-recording). Names load lazily, so importing this
package does not import pytest or vcrpy until a name is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connectors.testing._cassettes import (
        MATCH_ON,
        CassetteLeak,
        Leak,
        audit_cassette,
        audit_cassettes,
        leak_guard,
        unplayed,
        vcr_config,
    )
    from connectors.testing._scrub import (
        RESERVED_EMAIL_DOMAINS,
        SANDBOX_SCRUB_KEY,
        TAG_PREFIX,
        Scrubber,
        is_fictional_phone,
        is_reserved_email,
    )
    from connectors.testing._wire import CassetteMismatch, WireLog, WireRequest
    from connectors.testing.contract import (
        BACKENDS,
        ConnectorContract,
        ContractRun,
        Endpoint,
        KnownIssue,
        ModelCase,
        SampleContext,
        assert_round_trip,
        only_backends,
        selected_backends,
    )

__all__ = [
    "BACKENDS",
    "MATCH_ON",
    "RESERVED_EMAIL_DOMAINS",
    "SANDBOX_SCRUB_KEY",
    "TAG_PREFIX",
    "CassetteLeak",
    "CassetteMismatch",
    "ConnectorContract",
    "ContractRun",
    "Endpoint",
    "KnownIssue",
    "Leak",
    "ModelCase",
    "SampleContext",
    "Scrubber",
    "WireLog",
    "WireRequest",
    "assert_round_trip",
    "audit_cassette",
    "audit_cassettes",
    "is_fictional_phone",
    "is_reserved_email",
    "leak_guard",
    "only_backends",
    "selected_backends",
    "unplayed",
    "vcr_config",
]

_LAZY: dict[str, str] = {
    "MATCH_ON": "_cassettes",
    "CassetteLeak": "_cassettes",
    "Leak": "_cassettes",
    "audit_cassette": "_cassettes",
    "audit_cassettes": "_cassettes",
    "leak_guard": "_cassettes",
    "unplayed": "_cassettes",
    "vcr_config": "_cassettes",
    "RESERVED_EMAIL_DOMAINS": "_scrub",
    "SANDBOX_SCRUB_KEY": "_scrub",
    "TAG_PREFIX": "_scrub",
    "Scrubber": "_scrub",
    "is_fictional_phone": "_scrub",
    "is_reserved_email": "_scrub",
    "CassetteMismatch": "_wire",
    "WireLog": "_wire",
    "WireRequest": "_wire",
    "BACKENDS": "contract",
    "ConnectorContract": "contract",
    "ContractRun": "contract",
    "Endpoint": "contract",
    "KnownIssue": "contract",
    "ModelCase": "contract",
    "SampleContext": "contract",
    "assert_round_trip": "contract",
    "only_backends": "contract",
    "selected_backends": "contract",
}


def __getattr__(name: str) -> Any:
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
