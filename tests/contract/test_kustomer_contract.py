"""The Kustomer connector contract on every backend (sandbox, cassettes, live when configured)."""

from __future__ import annotations

from connectors.testing.kustomer import KustomerContract


class TestKustomerContract(KustomerContract):
    """Everything :class:`~connectors.testing.kustomer.KustomerContract` checks, for the built-in connector."""
