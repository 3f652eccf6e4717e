"""unified-connectors: Kustomer through unified models, behind an OAuth/API-key auth layer.

Quick use::

    from connectors import Connectors

    hub = Connectors()                                   # SQLite store in ./.connectors by default
    conn = await hub.connect("kustomer", "tenant-1", api_key="...", region="us")
    page = await conn.resources("genericContact").list(limit=50)

Names are imported lazily so ``import connectors`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from connectors.__about__ import __version__

if TYPE_CHECKING:
    from connectors.hookspecs import hookimpl
    from connectors.mapping import FieldMapping, Mapper, MappingContext, MappingExtension
    from connectors.registry import Registry, build_registry, default_registry
    from connectors.runtime.connection import Connection, Connectors, Resources
    from connectors.runtime.connector import Connector, ListQuery, Operation
    from connectors.settings import Settings
    from connectors.sync import SyncConnectors

__all__ = [
    "Connection",
    "Connector",
    "Connectors",
    "FieldMapping",
    "ListQuery",
    "Mapper",
    "MappingContext",
    "MappingExtension",
    "Operation",
    "Registry",
    "Resources",
    "Settings",
    "SyncConnectors",
    "__version__",
    "build_registry",
    "default_registry",
    "hookimpl",
]

_LAZY = {
    "hookimpl": "connectors.hookspecs",
    "FieldMapping": "connectors.mapping",
    "Mapper": "connectors.mapping",
    "MappingContext": "connectors.mapping",
    "MappingExtension": "connectors.mapping",
    "Registry": "connectors.registry",
    "build_registry": "connectors.registry",
    "default_registry": "connectors.registry",
    "Connection": "connectors.runtime.connection",
    "Connectors": "connectors.runtime.connection",
    "Resources": "connectors.runtime.connection",
    "Connector": "connectors.runtime.connector",
    "ListQuery": "connectors.runtime.connector",
    "Operation": "connectors.runtime.connector",
    "Settings": "connectors.settings",
    "SyncConnectors": "connectors.sync",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'connectors' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
