"""The Kustomer plugin: ``@hookimpl`` functions only (the ``unified_connectors`` entry point target)."""

from __future__ import annotations

from connectors.hookspecs import RegisterConnector, RegisterMapper, hookimpl

__all__ = ["register_connectors", "register_mappers"]


@hookimpl
def register_connectors(register: RegisterConnector) -> None:
    """Register :class:`~connectors.kustomer.connector.KustomerConnector`."""
    from connectors.kustomer.connector import KustomerConnector

    register(KustomerConnector)


@hookimpl
def register_mappers(register: RegisterMapper) -> None:
    """Register the built-in mapper of every unified model (and of ``custom`` KObjects)."""
    from connectors.kustomer.mappers import MAPPERS

    for mapper in MAPPERS:
        register("kustomer", mapper.model, mapper)
