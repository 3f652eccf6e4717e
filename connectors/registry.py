"""Builds the plugin manager and exposes what plugins registered through a typed facade.

``pm.hook.*`` is untyped (pluggy returns ``Any``); :class:`Registry` is the typed view the rest of the
package uses. Build one with :func:`build_registry`, or use the process-wide :func:`default_registry`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import pluggy

from connectors import hookspecs
from connectors.errors import PluginError
from connectors.mapping import Mapper, MappingContext, MappingExtension

if TYPE_CHECKING:
    from connectors.runtime.connector import Connector
    from unified_models import UnifiedResource

__all__ = ["DEFAULT_PLUGINS", "Registry", "build_registry", "default_registry", "get_plugin_manager"]

DEFAULT_PLUGINS: tuple[str, ...] = ("connectors.kustomer.plugin",)
"""Built-in plugins, registered first so a bare checkout works without an installed entry point."""


def get_plugin_manager(
    *, load_entrypoints: bool = True, plugins: Iterable[object] = (), builtins: bool = True
) -> pluggy.PluginManager:
    """Build a plugin manager: built-ins, then entry points, then ``plugins``, then ``check_pending()``.

    Args:
        load_entrypoints: load plugins declared in the ``unified_connectors`` entry-point group.
        plugins: extra plugin objects or modules (tests, embedding apps).
        builtins: register :data:`DEFAULT_PLUGINS`.

    Raises:
        PluginError: a plugin implements a hook that does not exist (e.g. a misspelled name).
    """
    pm = pluggy.PluginManager(hookspecs.NAME)
    pm.add_hookspecs(hookspecs)
    if builtins:
        for dotted in DEFAULT_PLUGINS:
            pm.register(importlib.import_module(dotted), name=dotted)
    if load_entrypoints:
        if builtins:
            # An installed checkout declares the built-in as an entry point too: block those entry points so the
            # same module is not registered twice under two names.
            for dotted in DEFAULT_PLUGINS:
                for name in _entry_point_names(importlib.import_module(dotted)):
                    pm.set_blocked(name)
        pm.load_setuptools_entrypoints(hookspecs.NAME)
    for plugin in plugins:
        pm.register(plugin, name=_plugin_name(plugin))
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(str(exc), plugin=getattr(exc, "plugin_name", None) or _plugin_name(exc.plugin)) from exc
    return pm


def _entry_point_names(module: object) -> list[str]:
    from importlib.metadata import entry_points

    target = getattr(module, "__name__", "")
    return [ep.name for ep in entry_points(group=hookspecs.NAME) if ep.value == target]


def _plugin_name(plugin: object) -> str:
    name = getattr(plugin, "__name__", None) or type(plugin).__qualname__
    return str(name)


@dataclass(frozen=True, slots=True)
class _Registered:
    value: Any
    plugin: str


class Registry:
    """What the plugins registered: connectors, mappers and mapping extensions. Immutable once built."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.plugin_manager = pm
        connectors: dict[str, _Registered] = {}
        mappers: dict[tuple[str, str], _Registered] = {}
        extensions: dict[tuple[str, str], list[MappingExtension]] = {}

        def each_impl(hook_name: str, make_callback: Callable[[str], Callable[..., None]]) -> None:
            caller = getattr(pm.hook, hook_name)
            # get_hookimpls() lists implementations in registration order (built-ins first).
            for impl in caller.get_hookimpls():
                impl.function(make_callback(impl.plugin_name))

        def connector_cb(plugin: str) -> Callable[..., None]:
            def register(connector: type[Connector], /) -> None:
                from connectors.runtime.connector import Connector

                if not (isinstance(connector, type) and issubclass(connector, Connector)):
                    raise PluginError(f"register_connectors got {connector!r}, not a Connector subclass", plugin=plugin)
                cid = getattr(connector, "id", None)
                if not isinstance(cid, str) or not cid:
                    raise PluginError(f"connector {connector.__qualname__} has no string 'id'", plugin=plugin)
                if cid in connectors:
                    first = connectors[cid].plugin
                    raise PluginError(f"connector {cid!r} is already registered by plugin {first!r}", plugin=plugin)
                connectors[cid] = _Registered(connector, plugin)

            return register

        def mapper_cb(plugin: str) -> Callable[..., None]:
            def register(connector_id: str, model: str, mapper: Mapper, /, *, replace: bool = False) -> None:
                if not isinstance(mapper, Mapper):
                    raise PluginError(
                        f"mapper for {connector_id}/{model} must have 'model', 'to_unified' and 'to_provider'",
                        plugin=plugin,
                    )
                if mapper.model != model:
                    raise PluginError(
                        f"mapper {type(mapper).__qualname__} maps {mapper.model!r} but was registered for {model!r}",
                        plugin=plugin,
                    )
                key = (connector_id, model)
                if key in mappers and not replace:
                    first = mappers[key].plugin
                    raise PluginError(
                        f"a mapper for {connector_id}/{model} is already registered by plugin {first!r}; "
                        "pass replace=True to override it",
                        plugin=plugin,
                    )
                if replace and key not in mappers:
                    raise PluginError(
                        f"replace=True but no mapper for {connector_id}/{model} is registered to replace",
                        plugin=plugin,
                    )
                mappers[key] = _Registered(mapper, plugin)

            return register

        def extension_cb(plugin: str) -> Callable[..., None]:
            def register(connector_id: str, model: str, extension: MappingExtension, /) -> None:
                if not isinstance(extension, MappingExtension):
                    raise PluginError(
                        f"extension for {connector_id}/{model} must subclass connectors.MappingExtension",
                        plugin=plugin,
                    )
                extensions.setdefault((connector_id, model), []).append(extension)

            return register

        each_impl("register_connectors", connector_cb)
        each_impl("register_mappers", mapper_cb)
        each_impl("register_mapping_extensions", extension_cb)

        for (cid, model), registered in mappers.items():
            if cid not in connectors:
                raise PluginError(f"mapper for unknown connector {cid!r} (model {model!r})", plugin=registered.plugin)
        for cid, _model in extensions:
            if cid not in connectors:
                raise PluginError(f"mapping extension for unknown connector {cid!r}")

        self._connectors: Mapping[str, type[Connector]] = MappingProxyType(
            {cid: reg.value for cid, reg in connectors.items()}
        )
        self._mappers: Mapping[tuple[str, str], Mapper] = MappingProxyType(
            {key: reg.value for key, reg in mappers.items()}
        )
        self._mapper_plugins: Mapping[tuple[str, str], str] = MappingProxyType(
            {key: reg.plugin for key, reg in mappers.items()}
        )
        self._extensions = MappingProxyType({key: tuple(value) for key, value in extensions.items()})

    @property
    def connectors(self) -> Mapping[str, type[Connector]]:
        """Registered connector classes by id."""
        return self._connectors

    def connector(self, connector_id: str) -> type[Connector]:
        """Return the connector class registered as ``connector_id``.

        Raises:
            PluginError: no such connector (the message lists the registered ones).
        """
        try:
            return self._connectors[connector_id]
        except KeyError:
            known = ", ".join(sorted(self._connectors)) or "none"
            raise PluginError(f"no connector {connector_id!r} is registered (registered: {known})") from None

    def models(self, connector_id: str) -> tuple[str, ...]:
        """The unified model ids that ``connector_id`` has mappers for."""
        return tuple(model for (cid, model) in self._mappers if cid == connector_id)

    def mapper(self, connector_id: str, model: str) -> Mapper:
        """Return the mapper for ``model`` of ``connector_id``; ``custom:<x>`` falls back to ``custom``.

        Raises:
            PluginError: no mapper is registered for it.
        """
        found = self._mappers.get((connector_id, model))
        if found is None and model.startswith("custom:"):
            found = self._mappers.get((connector_id, "custom"))
        if found is None:
            raise PluginError(f"connector {connector_id!r} has no mapper for model {model!r}")
        return found

    def mapper_plugin(self, connector_id: str, model: str) -> str | None:
        """Name of the plugin whose mapper is in effect for (connector, model)."""
        return self._mapper_plugins.get((connector_id, model))

    def extensions(self, connector_id: str, model: str) -> tuple[MappingExtension, ...]:
        """Mapping extensions for (connector, model), model-specific ones after ``"*"`` ones."""
        return self._extensions.get((connector_id, "*"), ()) + self._extensions.get((connector_id, model), ())

    def to_unified(self, resource: Any, context: MappingContext) -> UnifiedResource:
        """Map a provider object with the registered mapper, then every extension."""
        obj = self.mapper(context.connector_id, context.model).to_unified(resource, context)
        for extension in self.extensions(context.connector_id, context.model):
            obj = extension.after_to_unified(obj, resource, context)
        return obj

    def to_provider(self, obj: UnifiedResource, context: MappingContext) -> dict[str, Any]:
        """Map a unified object to a provider body with the registered mapper, then every extension."""
        extensions = self.extensions(context.connector_id, context.model)
        for extension in extensions:
            obj = extension.before_to_provider(obj, context)
        body = self.mapper(context.connector_id, context.model).to_provider(obj, context)
        for extension in extensions:
            body = extension.after_to_provider(body, obj, context)
        return body


def build_registry(*, load_entrypoints: bool = True, plugins: Iterable[object] = (), builtins: bool = True) -> Registry:
    """Build a :class:`Registry` from a fresh plugin manager (see :func:`get_plugin_manager`)."""
    return Registry(get_plugin_manager(load_entrypoints=load_entrypoints, plugins=plugins, builtins=builtins))


@cache
def default_registry() -> Registry:
    """The process-wide registry: built-ins plus installed entry-point plugins (built once)."""
    return build_registry()
