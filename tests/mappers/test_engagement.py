"""crmEngagement <-> Kustomer conversation or note."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import kustomer_payloads as kp
import pytest

from connectors.errors import ConfigurationError, MappingError
from connectors.kustomer.mappers import EngagementMapper, engagement_id, parse_engagement_id
from connectors.kustomer.mappers.engagement import check_engagement_ref, engagement_settings
from connectors.kustomer.wire import ConversationResource, NoteResource
from unified_models import Engagement, partial, ref

M = EngagementMapper()
PartialEngagement = partial(Engagement)
START = datetime(2026, 10, 21, 14, 2, 11, 925000, tzinfo=UTC)
DONE = datetime(2026, 10, 22, 9, 30, tzinfo=UTC)
SETTINGS = {"engagement": {"companies_attribute": "companiesId", "opportunities_attribute": "opportunitiesId"}}


def read(resource: Any, **kw: Any) -> Engagement:
    return M.to_unified(resource, kp.ctx("crmEngagement", **kw))


def write(obj: Engagement, **kw: Any) -> dict[str, Any]:
    return M.to_provider(obj, kp.ctx("crmEngagement", **kw))


def users(*ids: str) -> list[Any]:
    return [ref("genericUser", i) for i in ids]


# --- ids ---------------------------------------------------------------------------------------------


def test_engagement_ids_round_trip() -> None:
    assert engagement_id("conversation", "abc") == "abc"
    assert engagement_id("note", "abc") == "note:abc"
    assert parse_engagement_id("note:abc") == ("note", "abc")
    assert parse_engagement_id("abc") == ("conversation", "abc")
    for bad in ("note:", ""):
        with pytest.raises(MappingError) as info:
            parse_engagement_id(bad)
        assert info.value.field == "id"


def test_check_engagement_ref() -> None:
    assert check_engagement_ref(kp.CONVERSATION_ID, "crmOpportunity", "x") == kp.CONVERSATION_ID
    with pytest.raises(MappingError, match="is a note"):
        check_engagement_ref(f"note:{kp.NOTE_ID}", "crmOpportunity", "engagements.0")
    with pytest.raises(MappingError):
        check_engagement_ref("note:xyz", "crmOpportunity", "engagements.0")


# --- conversation read -------------------------------------------------------------------------------


def test_read_conversation(conversation: dict[str, Any]) -> None:
    e = read(conversation)
    assert e.id == kp.CONVERSATION_ID
    assert e.type == "email"
    assert e.direction == "inbound"
    assert e.status == "completed"
    assert e.title == "Refund for order 1042"
    assert e.description == "Hi, I would like a refund for order 1042..."
    assert e.started_at == START
    assert e.ended_at == DONE  # lastDone.createdAt, as the status is done
    assert e.duration == int((DONE - START).total_seconds())
    assert e.owner == ref("genericUser", kp.USER_ID)
    assert e.users == users(kp.USER_ID, kp.USER2_ID)
    assert e.contacts == [ref("genericContact", kp.CUSTOMER_ID)]
    assert e.companies == []
    assert e.opportunities == []
    assert e.custom_fields == {"orderNumberStr": "1042", "refundAmountNum": 25.5}


@pytest.mark.parametrize(
    ("attrs", "settings", "expected"),
    [
        ({"channels": ["voice"]}, None, "call"),
        ({"channels": ["email", "voice"]}, None, "email"),
        ({"channels": ["chat"]}, None, "email"),
        ({"channels": [], "replyChannel": "voice"}, None, "call"),
        ({"channels": None}, None, "email"),
        ({"channels": ["chat"]}, {"engagement": {"channel_types": {"chat": "meeting"}}}, "meeting"),
        ({"channels": ["sms"]}, {"engagement": {"default_type": "task"}}, "task"),
        ({"channels": ["voice"]}, {"engagement": {"channel_types": {}}}, "email"),
    ],
)
def test_type_from_channel(
    conversation: dict[str, Any], attrs: dict[str, Any], settings: dict[str, Any] | None, expected: str
) -> None:
    conversation["attributes"].update(attrs)
    assert read(conversation, settings=settings).type == expected


@pytest.mark.parametrize(
    ("status", "expected"),
    [("open", "inProgress"), ("snoozed", "planned"), ("done", "completed"), (None, None)],
)
def test_status_mapping(conversation: dict[str, Any], status: str | None, expected: str | None) -> None:
    conversation["attributes"]["status"] = status
    e = read(conversation)
    assert e.status == expected
    if status != "done":
        assert e.ended_at is None
        assert e.duration is None


def test_ended_at_prefers_ended_at(conversation: dict[str, Any]) -> None:
    conversation["attributes"]["endedAt"] = "2026-10-21T15:02:11.925Z"
    e = read(conversation)
    assert e.duration == 3600


def test_assigned_users_from_relationships(conversation: dict[str, Any]) -> None:
    del conversation["attributes"]["assignedUsers"]
    conversation["relationships"]["assignedUsers"] = {"data": [{"type": "user", "id": kp.USER2_ID}]}
    e = read(conversation)
    assert e.owner == ref("genericUser", kp.USER2_ID)
    assert e.users == users(kp.USER2_ID)


def test_no_assignee_no_customer(conversation: dict[str, Any]) -> None:
    conversation["attributes"]["assignedUsers"] = []
    del conversation["relationships"]["customer"]
    e = read(conversation)
    assert e.owner is None
    assert e.users == []
    assert e.contacts == []


def test_customer_as_attribute(conversation: dict[str, Any]) -> None:
    del conversation["relationships"]["customer"]
    conversation["attributes"]["customer"] = kp.CUSTOMER_ID
    assert read(conversation).contacts == [ref("genericContact", kp.CUSTOMER_ID)]


def test_preview_object(conversation: dict[str, Any]) -> None:
    conversation["attributes"]["preview"] = {"text": "hello", "sentAt": kp.T0}
    assert read(conversation).description == "hello"
    conversation["attributes"]["preview"] = {"html": "<p>"}
    assert read(conversation).description is None


def test_companies_and_opportunities_from_configured_attributes(conversation: dict[str, Any]) -> None:
    conversation["attributes"]["custom"].update(companiesId=[kp.COMPANY_ID], opportunitiesId=kp.OPPORTUNITY_ID)
    e = read(conversation, settings=SETTINGS)
    assert e.companies == [ref("genericCompany", kp.COMPANY_ID)]
    assert e.opportunities == [ref("crmOpportunity", kp.OPPORTUNITY_ID)]
    assert "companiesId" not in e.custom_fields
    assert "opportunitiesId" not in e.custom_fields
    # not configured: they are ordinary custom fields
    assert read(conversation).custom_fields["companiesId"] == [kp.COMPANY_ID]


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda a: a.update(direction="sideways"), "attributes.direction"),
        (lambda a: a.update(status="archived"), "attributes.status"),
        (lambda a: a.pop("createdAt"), "attributes.createdAt"),
        (lambda a: a.update(createdAt=5), "attributes.createdAt"),
        (lambda a: a.update(endedAt="2020-01-01T00:00:00Z"), "attributes.endedAt"),
        (lambda a: a.update(lastDone={"createdAt": "soon"}), "attributes.lastDone.createdAt"),
        (lambda a: a.update(lastDone="x"), "attributes.lastDone"),
        (lambda a: a.update(assignedUsers=[kp.USER_ID, 3]), "attributes.assignedUsers.1"),
        (lambda a: a.update(channels="email"), "attributes.channels"),
        (lambda a: a.update(name=5), "attributes.name"),
        (lambda a: a.update(preview=5), "attributes.preview"),
        (lambda a: a["custom"].update(companiesId=5), "attributes.custom.companiesId"),
        (
            lambda a: a["custom"].update(opportunitiesId=[kp.OPPORTUNITY_ID, None]),
            "attributes.custom.opportunitiesId.1",
        ),
    ],
)
def test_conversation_errors(conversation: dict[str, Any], mutate: Any, field: str) -> None:
    mutate(conversation["attributes"])
    with pytest.raises(MappingError) as info:
        read(conversation, settings=SETTINGS)
    assert info.value.field == field


def test_conversation_wire_model(conversation: dict[str, Any]) -> None:
    assert read(ConversationResource.model_validate(conversation)) == read(conversation)


def test_misconfigured_settings() -> None:
    for bad in (
        {"engagement": "x"},
        {"engagement": {"channel_types": {"voice": "phone"}}},
        {"engagement": {"default_type": "fax"}},
        {"engagement": {"companies_attribute": "companiesStr"}},
    ):
        with pytest.raises(ConfigurationError):
            engagement_settings(bad)


# --- note read ---------------------------------------------------------------------------------------


def test_read_note(note: dict[str, Any]) -> None:
    e = read(note, include_raw=True)
    assert e.id == f"note:{kp.NOTE_ID}"
    assert e.type == "note"
    assert e.description == "Customer called back; refund approved."
    assert e.title is None
    assert e.direction is None
    assert e.status == "completed"
    assert e.started_at == DONE
    assert e.owner == ref("genericUser", kp.USER_ID)
    assert e.contacts == [ref("genericContact", kp.CUSTOMER_ID)]
    assert e.users == []
    assert e.raw is not None
    assert e.raw["relationships"]["conversation"]["data"]["id"] == kp.CONVERSATION_ID


def test_note_wire_model_and_envelope(note: dict[str, Any]) -> None:
    assert read(NoteResource.model_validate(note)) == read(note)
    assert read({"data": note}) == read(note)


def test_note_errors(note: dict[str, Any]) -> None:
    note["attributes"]["body"] = ["x"]
    with pytest.raises(MappingError) as info:
        read(note)
    assert info.value.field == "attributes.body"


# --- conversation write ------------------------------------------------------------------------------


def new_conversation(**kw: Any) -> Engagement:
    base: dict[str, Any] = {
        "type": "call",
        "started_at": START,
        "contacts": [ref("genericContact", kp.CUSTOMER_ID)],
    }
    return Engagement(**(base | kw))


def test_create_conversation() -> None:
    body = write(
        new_conversation(
            direction="outbound",
            status="planned",
            title="Follow-up call",
            description="not written",
            owner=ref("genericUser", kp.USER_ID),
            users=users(kp.USER2_ID, kp.USER_ID),
            custom_fields={"orderNumberStr": "1042"},
        )
    )
    assert body == {
        "replyChannel": "voice",
        "direction": "out",
        "status": "snoozed",
        "name": "Follow-up call",
        "assignedUsers": [kp.USER_ID, kp.USER2_ID],
        "customer": kp.CUSTOMER_ID,
        "custom": {"orderNumberStr": "1042"},
    }


@pytest.mark.parametrize(
    ("status", "expected"),
    [("planned", "snoozed"), ("inProgress", "open"), ("completed", "done"), ("canceled", "done")],
)
def test_status_written(status: str, expected: str) -> None:
    assert write(new_conversation(status=status))["status"] == expected


def test_types_without_a_channel_write_no_reply_channel() -> None:
    assert "replyChannel" not in write(new_conversation(type="meeting"))
    assert write(new_conversation(type="email"))["replyChannel"] == "email"


def test_create_needs_exactly_one_contact() -> None:
    for contacts in ([], [ref("genericContact", kp.CUSTOMER_ID), ref("genericContact", kp.USER_ID)]):
        with pytest.raises(MappingError) as info:
            write(new_conversation(contacts=contacts))
        assert info.value.field == "contacts"


def test_more_than_ten_assigned_users() -> None:
    many = users(*(f"{i:024x}" for i in range(11)))
    with pytest.raises(MappingError) as info:
        write(new_conversation(users=many))
    assert info.value.field == "users"
    assert len(write(new_conversation(owner=many[0], users=many[:10]))["assignedUsers"]) == 10


def test_update_writes_only_what_changed(conversation: dict[str, Any]) -> None:
    assert write(PartialEngagement(status="inProgress"), current=conversation) == {"status": "open"}
    assert write(PartialEngagement(type="call"), current=conversation) == {}  # the channel never changes


def test_update_owner_keeps_current_users(conversation: dict[str, Any]) -> None:
    other = "6717c29de5b1f00012ab3503"
    body = write(PartialEngagement(owner=ref("genericUser", other)), current=conversation)
    assert body == {"assignedUsers": [other, kp.USER_ID, kp.USER2_ID]}
    body = write(PartialEngagement(users=users(other)), current=conversation)
    assert body == {"assignedUsers": [kp.USER_ID, other]}
    assert write(PartialEngagement(owner=None, users=[]), current=conversation) == {"assignedUsers": []}


def test_update_moves_conversation_to_one_contact(conversation: dict[str, Any]) -> None:
    other = "6717c29de5b1f00012ab34ff"
    assert write(PartialEngagement(contacts=[ref("genericContact", other)]), current=conversation) == {
        "customer": other
    }
    with pytest.raises(MappingError):
        write(PartialEngagement(contacts=[]), current=conversation)


def test_companies_and_opportunities_written_to_configured_attributes() -> None:
    body = write(
        new_conversation(
            companies=[ref("genericCompany", kp.COMPANY_ID)],
            opportunities=[ref("crmOpportunity", kp.OPPORTUNITY_ID)],
            custom_fields={"xStr": "y"},
        ),
        settings=SETTINGS,
    )
    assert body["custom"] == {
        "companiesId": [kp.COMPANY_ID],
        "opportunitiesId": [kp.OPPORTUNITY_ID],
        "xStr": "y",
    }


def test_companies_without_configured_attribute() -> None:
    with pytest.raises(MappingError) as info:
        write(new_conversation(companies=[ref("genericCompany", kp.COMPANY_ID)]))
    assert info.value.field == "companies"
    assert "custom" not in write(new_conversation(companies=[]))


def test_custom_field_cannot_write_a_configured_attribute() -> None:
    with pytest.raises(MappingError) as info:
        write(new_conversation(custom_fields={"companiesId": [kp.COMPANY_ID]}), settings=SETTINGS)
    assert info.value.field == "customFields.companiesId"


def test_bad_reference_id_in_configured_attribute() -> None:
    with pytest.raises(MappingError) as info:
        write(new_conversation(companies=[ref("genericCompany", "acme")]), settings=SETTINGS)
    assert info.value.field == "companies"


# --- note write --------------------------------------------------------------------------------------


def test_create_note() -> None:
    e = Engagement(
        type="note",
        started_at=START,
        description="Refund approved",
        title="ignored",
        contacts=[ref("genericContact", kp.CUSTOMER_ID)],
    )
    assert write(e) == {"body": "Refund approved", "customer": kp.CUSTOMER_ID}


def test_note_needs_a_description() -> None:
    with pytest.raises(MappingError) as info:
        write(Engagement(type="note", started_at=START))
    assert info.value.field == "description"


def test_note_update(note: dict[str, Any]) -> None:
    assert write(PartialEngagement(description="Edited"), current=note) == {"body": "Edited"}
    assert write(PartialEngagement(title="x"), current=note) == {}
    with pytest.raises(MappingError):
        write(PartialEngagement(description=None), current=note)


def test_note_rules(note: dict[str, Any]) -> None:
    two = [ref("genericContact", kp.CUSTOMER_ID), ref("genericContact", kp.USER_ID)]
    with pytest.raises(MappingError, match="at most one contact"):
        write(Engagement(type="note", started_at=START, description="x", contacts=two))
    with pytest.raises(MappingError, match="notes have no custom attributes"):
        write(Engagement(type="note", started_at=START, description="x", custom_fields={"aStr": "b"}))


def test_a_note_stays_a_note(note: dict[str, Any], conversation: dict[str, Any]) -> None:
    e = read(note)
    assert write(e, current=note) == {"body": e.description, "customer": kp.CUSTOMER_ID}
    with pytest.raises(MappingError) as info:
        write(PartialEngagement(type="call"), current=note)
    assert info.value.field == "type"
    with pytest.raises(MappingError):
        write(PartialEngagement(type="note"), current=conversation)
    with pytest.raises(MappingError):
        write(PartialEngagement(id=f"note:{kp.NOTE_ID}", type="email"))


def test_note_id_alone_selects_the_note_mapping() -> None:
    assert write(PartialEngagement(id=f"note:{kp.NOTE_ID}", description="x")) == {"body": "x"}
