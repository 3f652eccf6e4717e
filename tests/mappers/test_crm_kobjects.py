"""crmOpportunity / crmPipeline / crmStage and custom:<klass> <-> KObjects."""

from __future__ import annotations

from datetime import date
from typing import Any

import kustomer_payloads as kp
import pytest

from connectors.errors import ConfigurationError, MappingError
from connectors.kustomer.mappers import (
    CustomObjectMapper,
    OpportunityMapper,
    PipelineMapper,
    StageMapper,
)
from connectors.kustomer.wire import KObjectResource
from unified_models import CustomObject, Opportunity, Pipeline, partial, ref

OPP = OpportunityMapper()
PIPE = PipelineMapper()
STG = StageMapper()
CUS = CustomObjectMapper()


def test_read_opportunity(opportunity: dict[str, Any]) -> None:
    o = OPP.to_unified(opportunity, kp.ctx("crmOpportunity", include_raw=True))
    assert o.id == kp.OPPORTUNITY_ID
    assert o.name == "Analytical Engines renewal"
    assert o.description == "Three-year renewal"
    assert o.amount == 42000
    assert o.currency == "EUR"
    assert o.status == "open"
    assert o.close_date == date(2026, 12, 31)
    assert o.probability == 60
    assert o.stage == ref("crmStage", kp.STAGE_ID)
    assert o.pipeline == ref("crmPipeline", kp.PIPELINE_ID)
    assert o.owner == ref("genericUser", kp.USER_ID)
    assert o.contacts == [ref("genericContact", kp.CUSTOMER_ID)]
    assert o.companies == [ref("genericCompany", kp.COMPANY_ID)]
    assert o.engagements == [
        ref("crmEngagement", kp.CONVERSATION_ID),
        ref("crmEngagement", f"note:{kp.NOTE_ID}"),
    ]
    assert o.custom_fields == {"sourceStr": "webinar"}  # schema attributes are not custom fields
    assert o.raw is not None
    assert o.raw["attributes"]["externalId"] == "opp-7"


def test_read_minimal_opportunity() -> None:
    o = OPP.to_unified(
        {"type": "kobject", "id": kp.OPPORTUNITY_ID, "attributes": {"title": "x"}}, kp.ctx("crmOpportunity")
    )
    assert o.amount is None
    assert o.stage is None
    assert o.contacts == []
    assert o.custom_fields == {}


def test_close_date_is_the_utc_date(opportunity: dict[str, Any]) -> None:
    opportunity["attributes"]["custom"]["closeDateAt"] = "2026-12-31T23:30:00-02:00"
    assert OPP.to_unified(opportunity, kp.ctx("crmOpportunity")).close_date == date(2027, 1, 1)


def test_single_id_accepted_for_multi(opportunity: dict[str, Any]) -> None:
    opportunity["attributes"]["custom"]["contactsId"] = kp.CUSTOMER_ID
    assert OPP.to_unified(opportunity, kp.ctx("crmOpportunity")).contacts == [ref("genericContact", kp.CUSTOMER_ID)]


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        ("amountNum", "lots", "attributes.custom.amountNum"),
        ("currencyStr", "euros", "attributes.custom.currencyStr"),
        ("statusStr", "pending", "attributes.custom.statusStr"),
        ("closeDateAt", "end of year", "attributes.custom.closeDateAt"),
        ("probabilityNum", 140, "attributes.custom.probabilityNum"),
        ("stageId", [kp.STAGE_ID], "attributes.custom.stageId"),
        ("contactsId", {"id": kp.CUSTOMER_ID}, "attributes.custom.contactsId"),
        ("companiesId", [kp.COMPANY_ID, 7], "attributes.custom.companiesId.1"),
        ("sourceNum", "x", "customFields.sourceNum"),
    ],
)
def test_opportunity_errors(opportunity: dict[str, Any], key: str, value: Any, field: str) -> None:
    opportunity["attributes"]["custom"][key] = value
    with pytest.raises(MappingError) as info:
        OPP.to_unified(opportunity, kp.ctx("crmOpportunity"))
    assert info.value.field == field


def test_write_opportunity() -> None:
    o = Opportunity(
        name="Deal",
        description="d",
        amount=1000.0,
        currency="usd",
        status="won",
        close_date=date(2026, 3, 1),
        probability=100,
        stage=ref("crmStage", kp.STAGE_ID),
        pipeline=ref("crmPipeline", kp.PIPELINE_ID),
        owner=ref("genericUser", kp.USER_ID),
        contacts=[ref("genericContact", kp.CUSTOMER_ID)],
        companies=[ref("genericCompany", kp.COMPANY_ID)],
        engagements=[ref("crmEngagement", kp.CONVERSATION_ID)],
        custom_fields={"sourceStr": "web"},
    )
    assert OPP.to_provider(o, kp.ctx("crmOpportunity")) == {
        "title": "Deal",
        "description": "d",
        "custom": {
            "amountNum": 1000.0,
            "currencyStr": "USD",
            "statusStr": "won",
            "closeDateAt": "2026-03-01T00:00:00.000Z",
            "probabilityNum": 100.0,
            "stageId": kp.STAGE_ID,
            "pipelineId": kp.PIPELINE_ID,
            "ownerId": kp.USER_ID,
            "contactsId": [kp.CUSTOMER_ID],
            "companiesId": [kp.COMPANY_ID],
            "engagementsId": [kp.CONVERSATION_ID],
            "sourceStr": "web",
        },
    }


def test_partial_opportunity_update(opportunity: dict[str, Any]) -> None:
    body = OPP.to_provider(partial(Opportunity)(amount=5.5, stage=None), kp.ctx("crmOpportunity", current=opportunity))
    assert body == {"custom": {"amountNum": 5.5, "stageId": None}}


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        (Opportunity(amount=1.0), "name"),  # a KObject needs a title on create
        (Opportunity(name="x", stage=ref("crmStage", "stage-1")), "stage"),
        (Opportunity(name="x", contacts=[ref("genericContact", "c1")]), "contacts"),
        (Opportunity(name="x", engagements=[ref("crmEngagement", "note:zz")]), "engagements.0"),
        (Opportunity(name="x", engagements=[ref("crmEngagement", f"note:{kp.NOTE_ID}")]), "engagements.0"),
        (Opportunity(name="x", custom_fields={"amountNum": 3}), "customFields.amountNum"),
        (Opportunity(name="x", custom_fields={"source": "x"}), "customFields.source"),
    ],
)
def test_opportunity_write_errors(obj: Opportunity, field: str) -> None:
    with pytest.raises(MappingError) as info:
        OPP.to_provider(obj, kp.ctx("crmOpportunity"))
    assert info.value.field == field


def test_title_cannot_be_cleared(opportunity: dict[str, Any]) -> None:
    with pytest.raises(MappingError):
        OPP.to_provider(partial(Opportunity)(name=None), kp.ctx("crmOpportunity", current=opportunity))
    assert OPP.to_provider(partial(Opportunity)(probability=5), kp.ctx("crmOpportunity", current=opportunity)) == {
        "custom": {"probabilityNum": 5.0}
    }


def test_read_pipeline(pipeline: dict[str, Any]) -> None:
    p = PIPE.to_unified(pipeline, kp.ctx("crmPipeline"))
    assert p.name == "Sales"
    assert p.stages == [ref("crmStage", kp.STAGE_ID)]
    del pipeline["attributes"]["custom"]
    assert PIPE.to_unified(pipeline, kp.ctx("crmPipeline")).stages == []
    assert PIPE.to_provider(Pipeline(name="S", stages=[ref("crmStage", kp.STAGE_ID)]), kp.ctx("crmPipeline")) == {
        "title": "S",
        "custom": {"stagesId": [kp.STAGE_ID]},
    }


def test_read_and_write_stage(stage: dict[str, Any]) -> None:
    s = STG.to_unified(stage, kp.ctx("crmStage"))
    assert (s.name, s.type, s.order, s.probability) == ("Negotiation", "open", 3, 60.5)
    assert s.pipeline == ref("crmPipeline", kp.PIPELINE_ID)
    body = STG.to_provider(s, kp.ctx("crmStage"))
    assert body == {
        "title": "Negotiation",
        "custom": {"typeStr": "open", "orderNum": 3, "probabilityNum": 60.5, "pipelineId": kp.PIPELINE_ID},
    }


@pytest.mark.parametrize(
    ("key", "value"), [("typeStr", None), ("typeStr", "maybe"), ("orderNum", 2.5), ("orderNum", -1)]
)
def test_stage_errors(stage: dict[str, Any], key: str, value: Any) -> None:
    stage["attributes"]["custom"][key] = value
    with pytest.raises(MappingError) as info:
        STG.to_unified(stage, kp.ctx("crmStage"))
    assert info.value.field == f"attributes.custom.{key}"


def test_stage_without_title(stage: dict[str, Any]) -> None:
    del stage["attributes"]["title"]
    with pytest.raises(MappingError) as info:
        STG.to_unified(stage, kp.ctx("crmStage"))
    assert info.value.field == "attributes.title"


def test_klass_names_from_settings_do_not_change_attribute_names(stage: dict[str, Any]) -> None:
    settings = {"klasses": {"crmStage": "deal-stage", "pipeline": "deal-pipeline"}}
    assert STG.to_unified(stage, kp.ctx("crmStage", settings=settings)).name == "Negotiation"
    with pytest.raises(ConfigurationError):
        STG.to_unified(stage, kp.ctx("crmStage", settings={"klasses": {"crmThing": "x"}}))


def test_kobject_wire_model(opportunity: dict[str, Any]) -> None:
    wire = KObjectResource.model_validate(opportunity)
    assert OPP.to_unified(wire, kp.ctx("crmOpportunity")) == OPP.to_unified(opportunity, kp.ctx("crmOpportunity"))


# --- custom objects ----------------------------------------------------------------------------------


def test_read_custom_object(order: dict[str, Any]) -> None:
    o = CUS.to_unified(order, kp.ctx("custom:order"))
    assert o.model_id == "custom:order"
    assert o.object_type == "order"
    assert (o.title, o.description, o.external_id) == ("Order #1042", "2 items", "ord-1042")
    assert o.contact == ref("genericContact", kp.CUSTOMER_ID)  # a string attribute
    assert o.company == ref("genericCompany", kp.COMPANY_ID)  # a relationship
    assert o.tags == ["web"]
    assert o.custom_fields["totalNum"] == 99.9
    assert o.custom_fields["giftBool"] is False


def test_custom_object_needs_a_custom_model(order: dict[str, Any]) -> None:
    with pytest.raises(MappingError) as info:
        CUS.to_unified(order, kp.ctx("custom"))
    assert info.value.field == "objectType"


def test_write_custom_object(order: dict[str, Any]) -> None:
    obj = CustomObject(
        object_type="order",
        title="Order #1",
        external_id="o-1",
        contact=ref("genericContact", kp.CUSTOMER_ID),
        tags=["pos"],
        custom_fields={"totalNum": "12.5"},
    )
    assert CUS.to_provider(obj, kp.ctx("custom:order")) == {
        "title": "Order #1",
        "externalId": "o-1",
        "tags": ["pos"],
        "customer": kp.CUSTOMER_ID,
        "custom": {"totalNum": 12.5},
    }
    assert CUS.to_provider(partial(CustomObject)(company=None), kp.ctx("custom:order", current=order)) == {
        "company": None
    }
    with pytest.raises(MappingError) as info:
        CUS.to_provider(CustomObject(object_type="order"), kp.ctx("custom:order"))
    assert info.value.field == "title"
    with pytest.raises(MappingError) as info:
        CUS.to_provider(CustomObject(object_type="order", title="t", custom_fields={"x": 1}), kp.ctx("custom:order"))
    assert info.value.field == "customFields.x"
