"""Unified models: validation with field paths, camelCase JSON, partial models, events, pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import unified_models as um

ids = st.text(alphabet="0123456789abcdef", min_size=24, max_size=24)
texts = st.text(min_size=1, max_size=40).map(str.strip).filter(bool)
aware = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))


def refs(model: str) -> st.SearchStrategy[um.ResourceRef]:
    return st.builds(um.ref, st.just(model), ids)


contacts = st.builds(
    um.Contact,
    id=st.none() | ids,
    first_name=st.none() | texts,
    last_name=st.none() | texts,
    email=st.none() | st.emails(),
    external_id=st.none() | texts,
    tags=st.lists(texts, max_size=3),
    company=st.none() | refs("genericCompany"),
    created_at=st.none() | aware,
    custom_fields=st.dictionaries(texts, st.integers() | texts | st.booleans(), max_size=3),
)
engagements = st.builds(
    um.Engagement,
    type=st.sampled_from(["call", "meeting", "email", "task", "note"]),
    startedAt=aware,
    direction=st.none() | st.sampled_from(["inbound", "outbound"]),
    status=st.none() | st.sampled_from(["planned", "inProgress", "completed", "canceled"]),
    owner=st.none() | refs("genericUser"),
    contacts=st.lists(refs("genericContact"), max_size=3),
    duration=st.none() | st.integers(min_value=0, max_value=10**6),
)
opportunities = st.builds(
    um.Opportunity,
    name=st.none() | texts,
    amount=st.none() | st.floats(allow_nan=False, allow_infinity=False, width=32),
    currency=st.none() | st.sampled_from(["USD", "eur", "GBP"]),
    stage=st.none() | refs("crmStage"),
    pipeline=st.none() | refs("crmPipeline"),
    probability=st.none() | st.floats(min_value=0, max_value=100),
    status=st.none() | st.sampled_from(["open", "won", "lost"]),
)
others = st.one_of(
    st.builds(
        um.Company, name=texts, domains=st.lists(texts, max_size=2), employee_count=st.none() | st.integers(0, 10**6)
    ),
    st.builds(
        um.User,
        first_name=st.none() | texts,
        email=st.none() | st.emails(),
        user_type=st.none() | st.sampled_from(["user", "machine"]),
    ),
    st.builds(um.Workspace, name=texts, members=st.lists(refs("genericUser"), max_size=3)),
    st.builds(um.Pipeline, name=texts, stages=st.lists(refs("crmStage"), max_size=4)),
    st.builds(
        um.Stage,
        name=texts,
        type=st.sampled_from(["open", "won", "lost", "unknown"]),
        order=st.none() | st.integers(0, 50),
    ),
    st.builds(um.CustomObject, objectType=texts, title=st.none() | texts),
)


@settings(max_examples=200)
@given(st.one_of(contacts, engagements, opportunities, others))
def test_json_round_trip(obj: um.UnifiedResource) -> None:
    data = obj.model_dump(mode="json")
    assert all("_" not in key for key in data)  # camelCase on the wire
    again = type(obj).model_validate(data)
    assert again == obj
    assert type(obj).model_validate_json(obj.model_dump_json()) == obj


def test_snake_and_camel_are_both_accepted() -> None:
    assert um.Contact(first_name="Ada") == um.Contact.model_validate({"firstName": "Ada"})


@pytest.mark.parametrize(
    ("cls", "data", "path"),
    [
        (um.Contact, {"email": "not-an-email"}, ("email",)),
        (um.Contact, {"emails": [{"value": "ok@example.com"}, {"value": "nope"}]}, ("emails", 1, "value")),
        (um.Contact, {"firstNme": "typo"}, ("firstNme",)),
        (um.Company, {}, ("name",)),
        (um.Company, {"name": ""}, ("name",)),
        (um.Company, {"name": "A", "employeeCount": -1}, ("employeeCount",)),
        (um.Engagement, {"type": "call"}, ("startedAt",)),
        (um.Engagement, {"type": "fax", "startedAt": "2026-01-01T00:00:00Z"}, ("type",)),
        (um.Stage, {"name": "Won", "type": "maybe"}, ("type",)),
        (um.Opportunity, {"currency": "dollars"}, ("currency",)),
        (um.Opportunity, {"probability": 140}, ("probability",)),
        (um.Pipeline, {"name": "Sales"}, ("stages",)),
    ],
)
def test_validation_errors_name_the_field(
    cls: type[um.UnifiedResource], data: dict[str, Any], path: tuple[Any, ...]
) -> None:
    with pytest.raises(ValidationError) as info:
        cls.model_validate(data)
    assert any(err["loc"][: len(path)] == path for err in info.value.errors())


@pytest.mark.parametrize(
    ("cls", "data", "message", "loc"),
    [
        (um.Contact, {"company": {"model": "genericUser", "id": "x"}}, "must reference a genericCompany", ("company",)),
        (
            um.Workspace,
            {"name": "T", "members": [{"model": "genericUser", "id": "u"}, {"model": "genericContact", "id": "x"}]},
            "must reference a genericUser",
            ("members", 1),
        ),
        (um.Opportunity, {"stage": {"model": "crmPipeline", "id": "x"}}, "must reference a crmStage", ("stage",)),
        (
            um.Engagement,
            {"type": "call", "startedAt": "2026-01-02T00:00:00Z", "endedAt": "2026-01-01T00:00:00Z"},
            "ended_at is before started_at",
            (),
        ),
    ],
)
def test_reference_and_cross_field_rules(
    cls: type[um.UnifiedResource], data: dict[str, Any], message: str, loc: tuple[Any, ...]
) -> None:
    with pytest.raises(ValidationError, match=message) as info:
        cls.model_validate(data)
    assert info.value.errors()[0]["loc"] == loc


def test_models_are_frozen_and_datetimes_are_utc() -> None:
    contact = um.Contact(created_at=datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2))))
    assert contact.created_at == datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert um.Contact(created_at=datetime(2026, 1, 1)).created_at.tzinfo is UTC  # type: ignore[union-attr]
    with pytest.raises(ValidationError):
        contact.first_name = "x"  # type: ignore[misc]


def test_partial_models_allow_missing_required_fields_but_keep_rules() -> None:
    patch = um.partial(um.Company).model_validate({"domains": ["acme.example"]})
    assert patch.model_fields_set == {"domains"}
    with pytest.raises(ValidationError):
        um.partial(um.Company).model_validate({"name": ""})
    with pytest.raises(ValidationError):
        um.partial(um.Contact).model_validate({"email": "bad"})
    assert um.partial(um.Company) is um.partial(um.Company)
    assert isinstance(patch, um.Company)


def test_model_registry() -> None:
    assert set(um.MODELS) == {
        "genericContact",
        "genericCompany",
        "genericUser",
        "genericWorkspace",
        "crmOpportunity",
        "crmPipeline",
        "crmStage",
        "crmEngagement",
    }
    assert um.model_class("custom:order") is um.CustomObject
    assert um.CustomObject(object_type="order").model_id == "custom:order"
    with pytest.raises(KeyError, match="unknown unified model"):
        um.model_class("genericThing")


def test_refs_expanded_resources_round_trip() -> None:
    company = um.Company(id="c1", name="Acme")
    contact = um.Contact(company=um.ResourceRef(model="genericCompany", id="c1", resource=company))
    again = um.Contact.model_validate_json(contact.model_dump_json())
    assert isinstance(again.company.resource, um.Company)  # type: ignore[union-attr]
    assert "resource" not in um.ref("genericUser", "u").model_dump(mode="json")
    with pytest.raises(ValueError, match="no id"):
        um.Contact().as_ref()
    assert um.Contact(id="x").as_ref() == um.ref("genericContact", "x")


def test_events_validate_data_as_the_named_model() -> None:
    event = um.Event(
        model="genericContact",
        trigger="updated",
        id="c1",
        data=um.Contact(id="c1", first_name="Ada"),
        idempotency_key="evt-1",
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert event.name == "genericContact::updated"
    again = um.Event.model_validate_json(event.model_dump_json())
    assert isinstance(again.data, um.Contact)
    assert again.data.first_name == "Ada"
    with pytest.raises(ValidationError):
        um.Event(model="genericContact", trigger="archived", id="c", idempotency_key="k", occurred_at=datetime.now(UTC))  # type: ignore[arg-type]


def test_pages_and_field_definitions() -> None:
    page = um.Page[um.Contact](data=[um.Contact(id="1")], next="cursor")
    assert len(page) == 1
    assert page.model_dump(mode="json")["next"] == "cursor"
    definition = um.FieldDefinition(
        key="tier", name="Tier", type="select", options=[um.FieldOption(value="gold", label="Gold")], is_custom=True
    )
    assert definition.model_dump(mode="json")["isCustom"] is True
    with pytest.raises(ValidationError, match="options are only allowed on select"):
        um.FieldDefinition(key="x", name="X", type="text", options=[um.FieldOption(value=1, label="one")])


def test_unified_models_imports_nothing_from_connectors() -> None:
    import subprocess
    import sys

    code = (
        "import sys, unified_models; print(any(m == 'connectors' or m.startswith('connectors.') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
