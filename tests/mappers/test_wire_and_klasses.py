"""Wire models (envelopes parsed from bytes, leniency) and the CRM Klass schemas."""

from __future__ import annotations

import json
from typing import Any

import kustomer_payloads as kp
import pytest

from connectors.errors import ConfigurationError, MappingError
from connectors.kustomer import klasses
from connectors.kustomer.mappers import ContactMapper
from connectors.kustomer.wire import (
    RESOURCE_TYPES,
    CompanyResource,
    ConversationResource,
    CustomerResource,
    Envelope,
    KlassResource,
    KObjectResource,
    ListEnvelope,
    MessageResource,
    Resource,
)

# --- wire --------------------------------------------------------------------------------------------


def page(*records: Any) -> bytes:
    return json.dumps(
        {
            "meta": {"page": 1, "pageSize": 100},
            "links": {"self": "/v1/customers", "next": None},
            "data": list(records),
        }
    ).encode()


def test_list_envelope_parses_bytes(customer: dict[str, Any]) -> None:
    env = ListEnvelope[CustomerResource].model_validate_json(page(customer, customer))
    assert len(env.data) == 2
    first = env.data[0]
    assert isinstance(first, CustomerResource)
    assert first.attributes.name == "Ada King Lovelace"
    assert first.attributes.time_zone == "Europe/London"
    assert first.attributes.emails is not None
    assert first.attributes.emails[0]["email"] == "ada@analytical.example.com"
    assert first.attributes.model_extra is not None
    assert first.attributes.model_extra["displayColor"] == "purple"
    assert env.links == {"self": "/v1/customers", "next": None}
    # dumped back as received
    assert first.model_dump(mode="json", by_alias=True, exclude_unset=True) == customer


def test_a_bad_record_does_not_fail_the_page(customer: dict[str, Any]) -> None:
    bad = {"type": "customer", "id": kp.USER_ID, "attributes": {"emails": "nope"}}
    env = ListEnvelope[CustomerResource].model_validate_json(page(customer, bad))
    assert isinstance(env.data[0], CustomerResource)
    assert env.data[1] == bad
    mapper = ContactMapper()
    assert mapper.to_unified(env.data[0], kp.ctx("genericContact")).id == kp.CUSTOMER_ID
    with pytest.raises(MappingError) as info:
        mapper.to_unified(env.data[1], kp.ctx("genericContact"))
    assert info.value.field == "attributes.emails"


def test_lenient_nulls_and_extras() -> None:
    r = CustomerResource.model_validate(
        {"id": "x", "attributes": {"emails": None, "tags": None, "brandNew": {"a": 1}}, "relationships": None}
    )
    assert r.attributes.emails is None
    assert r.attributes.model_extra == {"brandNew": {"a": 1}}
    assert CustomerResource.model_validate({"id": "x"}).attributes.name is None


def test_snake_case_names_are_accepted_too() -> None:
    r = CustomerResource.model_validate({"id": "x", "attributes": {"time_zone": "UTC", "externalId": "e"}})
    assert (r.attributes.time_zone, r.attributes.external_id) == ("UTC", "e")


def test_relationship_accessor(conversation: dict[str, Any]) -> None:
    r = ConversationResource.model_validate(conversation)
    customer = r.relationship("customer")
    assert customer is not None
    assert customer["data"] == {"type": "customer", "id": kp.CUSTOMER_ID}
    assert r.relationship("nope") is None
    assert r.attributes.last_done == {"createdAt": kp.T1, "createdBy": kp.USER_ID}


def test_single_envelope_and_other_types(company: dict[str, Any], opportunity: dict[str, Any]) -> None:
    assert isinstance(
        Envelope[CompanyResource].model_validate_json(json.dumps({"data": company})).data, CompanyResource
    )
    k = KObjectResource.model_validate(opportunity)
    assert k.attributes.title == "Analytical Engines renewal"
    assert k.attributes.custom is not None
    klass = KlassResource.model_validate(
        {"type": "klass", "id": kp.KLASS_ID, "attributes": {"name": "order", "displayName": "Order"}}
    )
    assert klass.attributes.display_name == "Order"
    assert set(RESOURCE_TYPES) >= {
        "customer",
        "company",
        "user",
        "team",
        "conversation",
        "message",
        "note",
        "kobject",
        "klass",
    }
    assert all(issubclass(cls, Resource) for cls in RESOURCE_TYPES.values())


def test_message_resource() -> None:
    m = MessageResource.model_validate_json(json.dumps(kp.MESSAGE))
    assert (m.attributes.channel, m.attributes.direction, m.attributes.sent_at) == ("email", "in", kp.T0)
    assert m.attributes.model_extra == {"meta": {"to": "support@example.com", "cc": ["a@example.com"]}}
    assert m.model_dump(mode="json", by_alias=True, exclude_unset=True) == kp.MESSAGE


# --- klasses -----------------------------------------------------------------------------------------


def test_default_attribute_names() -> None:
    names = {m: [a.name for a in s.attributes] for m, s in klasses.DEFAULT_KLASS_SCHEMAS.items()}
    assert names == {
        "crmOpportunity": [
            "amountNum",
            "currencyStr",
            "statusStr",
            "closeDateAt",
            "probabilityNum",
            "stageId",
            "pipelineId",
            "ownerId",
            "contactsId",
            "companiesId",
            "engagementsId",
        ],
        "crmPipeline": ["stagesId"],
        "crmStage": ["typeStr", "orderNum", "probabilityNum", "pipelineId"],
    }


def test_schema_metadata_and_targets() -> None:
    opp = klasses.DEFAULT_KLASS_SCHEMAS["crmOpportunity"]
    assert opp.name == "crm-opportunity"
    assert opp.metadata_resource == "kobject_crm-opportunity"
    assert opp.klass_body() == {"name": "crm-opportunity", "displayName": "Opportunity", "icon": "briefcase"}
    props = opp.metadata_body()["properties"]
    assert props["statusStr"] == {"displayName": "Status", "enumeration": ["open", "won", "lost"]}
    assert props["stageId"] == {"displayName": "Stage", "target": "kobject_crm-stage"}
    assert props["ownerId"]["target"] == "user"
    assert props["contactsId"] == {"displayName": "Contacts", "target": "customer", "multi": True}
    assert props["companiesId"]["target"] == "company"
    assert props["engagementsId"]["target"] == "conversation"
    stage = klasses.DEFAULT_KLASS_SCHEMAS["crmStage"]
    assert stage.by_field["type"].metadata["enumeration"] == ("open", "won", "lost", "unknown")
    assert klasses.DEFAULT_KLASS_SCHEMAS["crmPipeline"].by_field["stages"].multi


def test_klass_name_overrides_follow_into_targets() -> None:
    settings = {"klasses": {"stage": "deal-stage", "crmOpportunity": "deal"}}
    assert klasses.klass_names(settings) == {
        "crmOpportunity": "deal",
        "crmPipeline": "crm-pipeline",
        "crmStage": "deal-stage",
    }
    opp = klasses.klass_schema("crmOpportunity", settings)
    assert opp.name == "deal"
    assert opp.by_field["stage"].metadata["target"] == "kobject_deal-stage"
    assert klasses.klass_schema("crmOpportunity", settings) is opp  # cached
    assert klasses.klass_name("crmStage", settings) == "deal-stage"
    assert klasses.klass_name("custom:order") == "order"
    with pytest.raises(KeyError):
        klasses.klass_name("genericContact")


@pytest.mark.parametrize("bad", [["x"], {"crmThing": "x"}, {"stage": ""}, {"stage": 3}])
def test_bad_klass_settings(bad: Any) -> None:
    with pytest.raises(ConfigurationError):
        klasses.klass_names({"klasses": bad})
