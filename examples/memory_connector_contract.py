"""Example: a third-party connector runs the connector contract suite (``connectors.testing``).

Put a module like this in your connector's ``tests/`` (its name must start with ``test_`` for pytest to
collect it; the copy here is collected by ``tests/contract/test_memory_contract.py``). The class declares the
models and how to reach an in-process fake of the provider; the suite then checks registration, the
operation table, connect/identify, every model operation with round-trip mapping, pagination, error
mapping and permission errors::

    python -m pytest tests/ -m contract

This connector has no HTTP API, so only the ``sandbox`` backend applies (no cassettes, no live org). A
connector that talks HTTP also implements ``recording_endpoint()`` (its fake over real HTTP, to record
cassettes from) and ``live_endpoint()`` (a real account, or the reason to skip).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import memory_connector

from connectors.registry import Registry, build_registry
from connectors.testing import ConnectorContract, Endpoint, ModelCase, SampleContext


def contact(s: SampleContext) -> dict[str, Any]:
    # Every record carries the run tag: the suite pages over exactly these, and a live run only touches them.
    return {
        "firstName": "Ada",
        "lastName": f"Lovelace {s.tag}",
        "email": f"{s.tag}-{s.index}@example.com",
        "tags": [s.tag],
    }


def company(s: SampleContext) -> dict[str, Any]:
    return {"name": f"{s.tag} Company {s.index}", "domains": [f"{s.tag}.example.com"], "tags": [s.tag]}


def key(purpose: str, roles: Sequence[str]) -> str:
    return memory_connector.api_key(roles)


class TestMemoryConnectorContract(ConnectorContract):
    connector_id: ClassVar[str] = "memory"
    backends: ClassVar[tuple[str, ...]] = ("sandbox",)
    cases: ClassVar[tuple[ModelCase, ...]] = (
        ModelCase(
            "genericContact",
            sample=contact,
            change=lambda s: {"firstName": "Grace"},
            tag_filter=lambda s: {"tags": [s.tag]},
            missing_id="999999",
        ),
        ModelCase(
            "genericCompany",
            sample=company,
            change=lambda s: {"name": f"{s.tag} Company renamed"},
            tag_filter=lambda s: {"tags": [s.tag]},
            missing_id="999999",
            page_size=1,
        ),
    )

    def registry(self) -> Registry:
        return build_registry(load_entrypoints=False, plugins=[memory_connector])

    @contextmanager
    def sandbox_endpoint(self) -> Iterator[Endpoint]:
        yield Endpoint(
            transport=None,
            connect_options={"base_url": memory_connector.new_org()},
            credential=key,
            description="in-memory example provider",
        )
