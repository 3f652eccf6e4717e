"""The plugin contract: built-ins, entry points, overrides, extensions, new connectors, and bad plugins."""

from __future__ import annotations

import importlib.util
import pathlib
import types
from typing import Any

import pytest

from connectors import Connectors, MappingExtension, Settings, build_registry, hookimpl
from connectors.errors import PluginError
from connectors.kustomer.mappers import MAPPERS
from connectors.registry import default_registry, get_plugin_manager
from unified_models import MODELS

EXAMPLES = pathlib.Path(__file__).parents[2] / "examples"


def load_example(name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_builtin_kustomer_plugin_maps_every_model() -> None:
    registry = build_registry(load_entrypoints=False)
    assert set(registry.connectors) == {"kustomer"}
    assert set(registry.models("kustomer")) == {*MODELS, "custom"}
    assert registry.mapper("kustomer", "custom:order").model == "custom"
    assert registry.mapper_plugin("kustomer", "genericContact") == "connectors.kustomer.plugin"


def test_installed_entry_point_does_not_register_the_builtin_twice() -> None:
    from importlib.metadata import entry_points

    assert any(ep.value == "connectors.kustomer.plugin" for ep in entry_points(group="unified_connectors"))
    registry = build_registry(load_entrypoints=True)
    assert list(registry.connectors) == ["kustomer"]
    assert default_registry() is default_registry()


def test_entry_point_only_registration_works_without_builtins() -> None:
    registry = build_registry(load_entrypoints=True, builtins=False)
    assert "kustomer" in registry.connectors


def test_override_one_mapper_with_replace() -> None:
    registry = build_registry(plugins=[load_example("override_contact_mapper")], load_entrypoints=False)
    assert type(registry.mapper("kustomer", "genericContact")).__name__ == "DisplayNameContactMapper"
    assert registry.mapper_plugin("kustomer", "genericContact") == "override_contact_mapper"
    # Every other model keeps the built-in mapper.
    assert registry.mapper("kustomer", "genericCompany") is next(m for m in MAPPERS if m.model == "genericCompany")


def test_extension_adds_a_field_to_the_mapping() -> None:
    from connectors.mapping import MappingContext

    registry = build_registry(plugins=[load_example("add_field_extension")], load_entrypoints=False)
    resource = {
        "type": "customer",
        "id": "6412e0146bd650f9c3000001",
        "attributes": {"name": "Ada Lovelace", "conversationCounts": {"open": 3}},
    }
    contact = registry.to_unified(resource, MappingContext(connector_id="kustomer", model="genericContact"))
    assert contact.custom_fields["openConversations"] == 3
    assert contact.first_name == "Ada"


@pytest.mark.anyio
async def test_a_whole_new_connector_through_the_hub(memory_store: object) -> None:
    memory = load_example("memory_connector")
    registry = build_registry(plugins=[memory], load_entrypoints=False)
    assert set(registry.connectors) == {"kustomer", "memory"}
    hub = Connectors(settings=Settings(), store=memory_store, registry=registry)  # type: ignore[arg-type]
    try:
        conn = await hub.connect("memory", "owner-1", api_key="memory.read,memory.write")
        created = await conn.resources("genericContact").create({"firstName": "Grace", "email": "grace@example.com"})
        assert created.id and created.first_name == "Grace"
        page = await conn.resources("genericContact").list()
        assert [c.id for c in page.data] == [created.id]
        readonly = await hub.connect("memory", "owner-2", api_key="memory.read")
        assert "genericContact::create" not in readonly.info.operations
        from connectors.errors import InsufficientPermissionsError

        with pytest.raises(InsufficientPermissionsError, match=r"memory\.write"):
            await readonly.resources("genericContact").create({"firstName": "X"})
    finally:
        await hub.aclose()


class _Plugin:
    def __init__(self, **hooks: Any) -> None:
        for name, fn in hooks.items():
            setattr(self, name, hookimpl(fn))


def test_duplicate_connector_names_both_plugins() -> None:
    from connectors.kustomer.connector import KustomerConnector

    class Again(KustomerConnector):
        pass

    plugin = _Plugin(register_connectors=lambda register: register(Again))
    with pytest.raises(PluginError, match=r"already registered by plugin 'connectors.kustomer.plugin'") as info:
        build_registry(plugins=[plugin], load_entrypoints=False)
    assert info.value.plugin == "_Plugin"


def test_duplicate_mapper_without_replace_is_refused() -> None:
    builtin = next(m for m in MAPPERS if m.model == "genericContact")
    plugin = _Plugin(register_mappers=lambda register: register("kustomer", "genericContact", builtin))
    with pytest.raises(PluginError, match="pass replace=True"):
        build_registry(plugins=[plugin], load_entrypoints=False)


@pytest.mark.parametrize(
    ("hooks", "message"),
    [
        ({"register_mappers": lambda register: register("kustomer", "genericContact", object())}, "must have 'model'"),
        (
            {"register_mappers": lambda register: register("nowhere", "genericContact", MAPPERS[0], replace=False)},
            "unknown connector 'nowhere'",
        ),
        (
            {"register_mappers": lambda register: register("kustomer", "genericThing", MAPPERS[0], replace=True)},
            "maps 'genericContact' but was registered for 'genericThing'",
        ),
        ({"register_connectors": lambda register: register(object)}, "not a Connector subclass"),
        ({"register_mapping_extensions": lambda register: register("kustomer", "*", object())}, "MappingExtension"),
    ],
)
def test_bad_registrations_name_the_plugin(hooks: dict[str, Any], message: str) -> None:
    with pytest.raises(PluginError, match=message) as info:
        build_registry(plugins=[_Plugin(**hooks)], load_entrypoints=False)
    assert "_Plugin" in str(info.value)


def test_replace_without_anything_to_replace() -> None:
    class Mapper:
        model = "genericContact"

        def to_unified(self, resource: Any, context: Any) -> Any:
            raise NotImplementedError

        def to_provider(self, obj: Any, context: Any) -> dict[str, Any]:
            raise NotImplementedError

    plugin = _Plugin(register_mappers=lambda register: register("kustomer", "genericContact", Mapper(), replace=True))
    with pytest.raises(PluginError, match=r"nothing|no mapper"):
        build_registry(plugins=[plugin], load_entrypoints=False, builtins=False)


def test_misspelled_hook_is_refused_with_the_plugin_name() -> None:
    module = types.ModuleType("typo_plugin")

    @hookimpl
    def register_mapper(register: Any) -> None:  # missing the final "s"
        raise AssertionError("never called")

    module.register_mapper = register_mapper  # type: ignore[attr-defined]
    with pytest.raises(PluginError, match="typo_plugin") as info:
        get_plugin_manager(plugins=[module], load_entrypoints=False)
    assert "register_mapper" in str(info.value)


def test_extension_before_hook_runs_before_the_mapper() -> None:
    from connectors.mapping import MappingContext
    from unified_models import Contact

    class DropExposed(MappingExtension):
        def before_to_provider(self, obj: Any, context: MappingContext) -> Any:
            fields = {k: v for k, v in obj.custom_fields.items() if k != "openConversations"}
            return obj.model_copy(update={"custom_fields": fields})

    plugin = _Plugin(register_mapping_extensions=lambda register: register("kustomer", "genericContact", DropExposed()))
    registry = build_registry(plugins=[plugin], load_entrypoints=False)
    body = registry.to_provider(
        Contact(first_name="A", custom_fields={"openConversations": 3, "loyaltyTierStr": "gold"}),
        MappingContext(connector_id="kustomer", model="genericContact"),
    )
    assert body["custom"] == {"loyaltyTierStr": "gold"}
