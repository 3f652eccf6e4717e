"""The pluggy contract of unified-connectors.

A plugin is a module (or object) with ``@hookimpl`` functions. Every hook is synchronous and free of side
effects: it only *registers* objects through the callback it is given, and never does I/O. Plugins are
found through the ``unified_connectors`` entry-point group::

    [project.entry-points.unified_connectors]
    myplugin = "my_package.plugin"

and a plugin module looks like this::

    from connectors import hookimpl

    @hookimpl
    def register_mappers(register):
        register("kustomer", "genericContact", MyContactMapper(), replace=True)

Order: built-in plugins register first, then entry points, then plugins passed explicitly. A second
registration of the same connector, or of the same (connector, model) mapper without ``replace=True``,
fails with a :class:`~connectors.errors.PluginError` naming both plugins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import pluggy

if TYPE_CHECKING:
    from connectors.mapping import Mapper, MappingExtension
    from connectors.runtime.connector import Connector

__all__ = [
    "NAME",
    "RegisterConnector",
    "RegisterMapper",
    "RegisterMappingExtension",
    "hookimpl",
    "hookspec",
    "register_connectors",
    "register_mappers",
    "register_mapping_extensions",
]

NAME = "unified_connectors"
"""The pluggy project name and the entry-point group."""

hookspec = pluggy.HookspecMarker(NAME)
hookimpl = pluggy.HookimplMarker(NAME)


class RegisterConnector(Protocol):
    """Callback given to :func:`register_connectors`."""

    def __call__(self, connector: type[Connector], /) -> None:
        """Register a connector class (its ``id`` must be unique)."""


class RegisterMapper(Protocol):
    """Callback given to :func:`register_mappers`."""

    def __call__(self, connector_id: str, model: str, mapper: Mapper, /, *, replace: bool = False) -> None:
        """Register ``mapper`` for ``model`` of ``connector_id``; ``replace=True`` overrides an earlier one."""


class RegisterMappingExtension(Protocol):
    """Callback given to :func:`register_mapping_extensions`."""

    def __call__(self, connector_id: str, model: str, extension: MappingExtension, /) -> None:
        """Register an extension that runs after the mapper of ``model`` (``"*"``: every model)."""


@hookspec
def register_connectors(register: RegisterConnector) -> None:
    """Register connector classes.

    Args:
        register: call it once per :class:`~connectors.runtime.connector.Connector` subclass.
    """


@hookspec
def register_mappers(register: RegisterMapper) -> None:
    """Register mappers, one per (connector id, unified model id).

    Args:
        register: ``register(connector_id, model, mapper, replace=False)``; pass ``replace=True`` to
            override a mapper registered earlier (e.g. a built-in one).
    """


@hookspec
def register_mapping_extensions(register: RegisterMappingExtension) -> None:
    """Register mapping extensions that post-process a mapper's output in both directions.

    Args:
        register: ``register(connector_id, model, extension)``; ``model`` may be ``"*"``.
    """
