"""``connectors.kustomer.to_unified`` / ``to_kustomer`` and plugin overrides through the registry."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import kustomer_payloads as kp
import pytest

import connectors.kustomer as kustomer
from connectors.errors import MappingError, PluginError
from connectors.hookspecs import hookimpl
from connectors.kustomer import to_kustomer, to_unified
from connectors.kustomer.mappers import MAPPERS, ContactMapper
from connectors.mapping import FieldMapping, MappingContext, MappingExtension
from connectors.registry import build_registry
from unified_models import MODELS, Contact, CustomObject, Engagement, UnifiedResource


def test_all_is_curated_and_lazy() -> None:
    assert kustomer.__all__ == sorted(kustomer.__all__)
    assert {"to_unified", "to_kustomer", "engagement_id", "parse_engagement_id"} <= set(kustomer.__all__)
    assert kustomer.parse_engagement_id("note:x") == ("note", "x")
    assert "engagement_id" in dir(kustomer)
    with pytest.raises(AttributeError):
        _ = kustomer.nope  # type: ignore[attr-defined]


def test_import_is_cheap() -> None:
    code = (
        "import sys, connectors.kustomer; "
        "print(sorted(m for m in ('pydantic', 'httpx', 'unified_models') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_one_mapper_per_model() -> None:
    assert sorted(m.model for m in MAPPERS) == sorted([*MODELS, "custom"])
    assert repr(MAPPERS[0]) == "ContactMapper(model='genericContact')"


def test_to_unified_accepts_resource_or_envelope(customer: dict[str, Any]) -> None:
    direct = to_unified("genericContact", customer)
    assert isinstance(direct, Contact)
    assert to_unified("genericContact", {"data": customer}) == direct
    raw = to_unified("genericContact", {"data": customer}, include_raw=True).raw
    assert raw == customer


def test_to_unified_field_mapping_and_settings(customer: dict[str, Any], conversation: dict[str, Any]) -> None:
    c = to_unified("genericContact", customer, field_mapping={"tier": "loyaltyTierStr"})
    assert c.custom_fields["tier"] == "gold"
    c = to_unified(
        "genericContact", customer, field_mapping=FieldMapping({"tier": "loyaltyTierStr"}, passthrough=False)
    )
    assert c.custom_fields == {"tier": "gold"}
    e = to_unified("crmEngagement", conversation, settings={"engagement": {"default_type": "task"}})
    assert isinstance(e, Engagement)
    assert e.type == "email"
    conversation["attributes"]["channels"] = ["chat"]
    assert to_unified("crmEngagement", conversation, settings={"engagement": {"default_type": "task"}}).type == "task"


def test_to_unified_custom_model(order: dict[str, Any]) -> None:
    obj = to_unified("custom:order", order)
    assert isinstance(obj, CustomObject)
    assert obj.object_type == "order"


def test_unknown_model() -> None:
    with pytest.raises(PluginError):
        to_unified("genericThing", {"id": "x"})
    with pytest.raises(MappingError):
        to_kustomer("genericThing", {"name": "x"})


def test_to_kustomer_from_dict_and_object(customer: dict[str, Any]) -> None:
    assert to_kustomer("genericContact", {"firstName": "Augusta"}, current={"data": customer}) == {
        "name": "Augusta King Lovelace",
        "company": kp.COMPANY_ID,
    }
    assert to_kustomer("genericContact", Contact(first_name="Ada")) == {"name": "Ada"}
    body = to_kustomer("genericContact", {"customFields": {"tier": "gold"}}, field_mapping={"tier": "loyaltyTierStr"})
    assert body == {"custom": {"loyaltyTierStr": "gold"}}


def test_to_kustomer_validates_dicts() -> None:
    with pytest.raises(MappingError) as info:
        to_kustomer("genericContact", {"email": "nope"})
    assert info.value.field == "email"
    with pytest.raises(MappingError) as info:
        to_kustomer("genericCompany", {"employeeCount": 3})  # a create needs the name
    assert info.value.field == "name"
    # an update (current given) validates with the partial model
    assert to_kustomer("genericCompany", {"employeeCount": 3}, current=kp.COMPANY) == {"employeeCount": 3}


def test_to_kustomer_custom_and_settings() -> None:
    assert to_kustomer("custom:order", {"title": "o", "customFields": {"totalNum": "2"}}) == {
        "title": "o",
        "custom": {"totalNum": 2},
    }
    body = to_kustomer("crmOpportunity", {"name": "x", "amount": 2}, settings={"klasses": {"crmOpportunity": "deal"}})
    assert body == {"title": "x", "custom": {"amountNum": 2.0}}


def test_custom_field_errors_before_any_request() -> None:
    with pytest.raises(MappingError) as info:
        to_kustomer("genericContact", {"customFields": {"ltv": "lots"}}, field_mapping={"ltv": "lifetimeValueNum"})
    assert info.value.field == "customFields.ltv"


# --- plugins -----------------------------------------------------------------------------------------


class ShoutingContactMapper(ContactMapper):
    """A third-party override: upper-cases the first name on read."""

    def to_unified(self, resource: Any, context: MappingContext) -> Contact:
        contact = super().to_unified(resource, context)
        return contact.model_copy(update={"first_name": (contact.first_name or "").upper()})


class OverridePlugin:
    @hookimpl
    def register_mappers(self, register: Any) -> None:
        register("kustomer", "genericContact", ShoutingContactMapper(), replace=True)


class DisplayNameExtension(MappingExtension):
    """Exposes ``attributes.displayName`` as a custom field, and writes ``displayName`` from the name."""

    def after_to_unified(self, obj: UnifiedResource, resource: Any, context: MappingContext) -> UnifiedResource:
        display = resource["attributes"].get("displayName")
        return obj.model_copy(update={"custom_fields": {**obj.custom_fields, "displayName": display}})

    def after_to_provider(self, body: dict[str, Any], obj: UnifiedResource, context: MappingContext) -> dict[str, Any]:
        if "name" in body:
            body["displayName"] = body["name"]
        return body


class ExtensionPlugin:
    @hookimpl
    def register_mapping_extensions(self, register: Any) -> None:
        register("kustomer", "genericContact", DisplayNameExtension())


def test_plugin_overrides_one_mapper(customer: dict[str, Any], company: dict[str, Any]) -> None:
    registry = build_registry(load_entrypoints=False, plugins=[OverridePlugin()])
    contact = registry.to_unified(customer, kp.ctx("genericContact"))
    assert contact.first_name == "ADA"
    assert registry.mapper_plugin("kustomer", "genericContact") == "OverridePlugin"
    # the other mappers are the built-ins
    assert registry.to_unified(company, kp.ctx("genericCompany")).name == "Analytical Engines Ltd"


def test_mapping_extension_adds_a_field(customer: dict[str, Any]) -> None:
    registry = build_registry(load_entrypoints=False, plugins=[ExtensionPlugin()])
    contact = registry.to_unified(customer, kp.ctx("genericContact"))
    assert contact.custom_fields["displayName"] == "Ada King Lovelace"
    body = registry.to_provider(
        Contact(first_name="Ada", custom_fields={"loyaltyTierStr": "gold"}), kp.ctx("genericContact")
    )
    assert body == {"name": "Ada", "custom": {"loyaltyTierStr": "gold"}, "displayName": "Ada"}


def test_mapping_extension_on_write_sees_the_mapped_body() -> None:
    class Tagger(MappingExtension):
        def after_to_provider(
            self, body: dict[str, Any], obj: UnifiedResource, context: MappingContext
        ) -> dict[str, Any]:
            return {**body, "tags": [*body.get("tags", []), "synced"]}

    class TaggerPlugin:
        @hookimpl
        def register_mapping_extensions(self, register: Any) -> None:
            register("kustomer", "*", Tagger())

    registry = build_registry(load_entrypoints=False, plugins=[TaggerPlugin()])
    assert registry.to_provider(Contact(tags=["vip"]), kp.ctx("genericContact")) == {"tags": ["vip", "synced"]}
