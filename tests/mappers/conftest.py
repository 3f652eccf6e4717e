"""Fixtures of the mapper tests: realistic Kustomer payloads (see ``kustomer_payloads``)."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest

# The payload/helper module sits next to this file; test modules import it by name.
_HERE = str(Path(__file__).parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import kustomer_payloads as kp  # noqa: E402


@pytest.fixture
def customer() -> dict[str, Any]:
    return copy.deepcopy(kp.CUSTOMER)


@pytest.fixture
def company() -> dict[str, Any]:
    return copy.deepcopy(kp.COMPANY)


@pytest.fixture
def user() -> dict[str, Any]:
    return copy.deepcopy(kp.USER)


@pytest.fixture
def team() -> dict[str, Any]:
    return copy.deepcopy(kp.TEAM)


@pytest.fixture
def conversation() -> dict[str, Any]:
    return copy.deepcopy(kp.CONVERSATION)


@pytest.fixture
def note() -> dict[str, Any]:
    return copy.deepcopy(kp.NOTE)


@pytest.fixture
def opportunity() -> dict[str, Any]:
    return copy.deepcopy(kp.OPPORTUNITY)


@pytest.fixture
def pipeline() -> dict[str, Any]:
    return copy.deepcopy(kp.PIPELINE)


@pytest.fixture
def stage() -> dict[str, Any]:
    return copy.deepcopy(kp.STAGE)


@pytest.fixture
def order() -> dict[str, Any]:
    return copy.deepcopy(kp.ORDER)
