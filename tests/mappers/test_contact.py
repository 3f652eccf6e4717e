"""genericContact <-> Kustomer customer."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import kustomer_payloads as kp
import pytest

from connectors.errors import MappingError
from connectors.kustomer.mappers import ContactMapper
from connectors.kustomer.wire import CustomerResource, Envelope
from unified_models import Contact, Email, Phone, partial, ref

M = ContactMapper()
PartialContact = partial(Contact)


def read(resource: Any, **kw: Any) -> Contact:
    return M.to_unified(resource, kp.ctx("genericContact", **kw))


def write(obj: Contact, **kw: Any) -> dict[str, Any]:
    return M.to_provider(obj, kp.ctx("genericContact", **kw))


# --- read --------------------------------------------------------------------------------------------


def test_read_full_customer(customer: dict[str, Any]) -> None:
    c = read(customer)
    assert c.id == kp.CUSTOMER_ID
    assert (c.first_name, c.last_name) == ("Ada", "King Lovelace")
    assert c.email == "ada@analytical.example.com"
    assert c.emails == [
        Email(type="work", value="ada@analytical.example.com"),
        Email(type="home", value="ada.lovelace@example.org"),
    ]
    assert c.phone == "+14155550100"
    assert [p.value for p in c.phones] == ["+14155550100", "+14155550199"]
    assert c.company == ref("genericCompany", kp.COMPANY_ID)
    assert c.external_id == "crm-000123"
    assert c.tags == ["vip", "beta"]
    assert (c.locale, c.time_zone) == ("en-GB", "Europe/London")
    assert c.created_at == datetime(2025, 1, 2, 10, tzinfo=UTC)
    assert c.updated_at == datetime(2026, 10, 21, 14, 2, 11, 925000, tzinfo=UTC)
    assert c.custom_fields == {
        "loyaltyTierStr": "gold",
        "lifetimeValueNum": 1840.5,
        "ordersNum": 12,
        "lastOrderAt": datetime(2026, 10, 2, 15, 4, 5, tzinfo=UTC),
        "marketingOptInBool": True,
        "accountUrl": "https://shop.example.com/accounts/123",
        "notesTxt": "Prefers email.",
    }
    assert c.raw is None


@pytest.mark.parametrize(
    ("name", "first", "last"),
    [
        ("Ada", "Ada", None),
        ("Ada Lovelace", "Ada", "Lovelace"),
        ("Ada King Lovelace", "Ada", "King Lovelace"),
        ("  Ada   King  ", "Ada", "King"),
        ("", None, None),
        (None, None, None),
    ],
)
def test_name_is_split_on_the_first_whitespace(
    customer: dict[str, Any], name: str | None, first: str | None, last: str | None
) -> None:
    customer["attributes"]["name"] = name
    c = read(customer)
    assert (c.first_name, c.last_name) == (first, last)


def test_minimal_customer_is_lenient() -> None:
    c = read({"type": "customer", "id": kp.CUSTOMER_ID})
    assert c.id == kp.CUSTOMER_ID
    assert c.emails == []
    assert c.email is None
    assert c.company is None
    assert c.custom_fields == {}


def test_nulls_and_blank_entries_are_tolerated(customer: dict[str, Any]) -> None:
    a = customer["attributes"]
    a.update(tags=None, custom=None, phones=None, locale=None)
    a["emails"] = [
        {"type": "home", "email": None},
        {"type": "work", "email": "  "},
        {"email": "x@example.com"},
    ]
    customer["relationships"]["company"] = {"data": None}
    c = read(customer)
    assert c.tags == []
    assert c.custom_fields == {}
    assert c.phones == []
    assert c.company is None
    assert c.emails == [Email(value="x@example.com")]
    assert c.email == "x@example.com"


def test_company_from_string_attribute(customer: dict[str, Any]) -> None:
    del customer["relationships"]["company"]
    customer["attributes"]["company"] = kp.COMPANY_ID
    assert read(customer).company == ref("genericCompany", kp.COMPANY_ID)


def test_envelope_wire_model_and_bytes_inputs_agree(customer: dict[str, Any]) -> None:
    expected = read(customer)
    assert read({"data": customer}) == expected
    assert read(CustomerResource.model_validate(customer)) == expected
    envelope = Envelope[CustomerResource].model_validate_json(json.dumps({"data": customer}))
    assert read(envelope) == expected
    assert read(envelope.data) == expected


def test_raw_is_the_resource_as_received(customer: dict[str, Any]) -> None:
    assert read(customer, include_raw=True).raw == customer
    wire = CustomerResource.model_validate_json(json.dumps(customer))
    assert read(wire, include_raw=True).raw == customer


def test_field_mapping_renames_and_hides_custom_attributes(customer: dict[str, Any]) -> None:
    c = read(customer, fields={"tier": "loyaltyTierStr", "ltv": "lifetimeValueNum"}, passthrough=False)
    assert c.custom_fields == {"tier": "gold", "ltv": 1840.5}


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: r["attributes"]["emails"][1].update(email="not-an-email"), "attributes.emails.1.email"),
        (lambda r: r["attributes"]["emails"][0].update(email=42), "attributes.emails.0.email"),
        (lambda r: r["attributes"]["emails"][0].update(type=["work"]), "attributes.emails.0.type"),
        (lambda r: r["attributes"].update(emails="ada@example.com"), "attributes.emails"),
        (lambda r: r["attributes"]["emails"].append("ada@example.com"), "attributes.emails.2"),
        (lambda r: r["attributes"]["phones"][1].update(phone="call me"), "attributes.phones.1.phone"),
        (lambda r: r["attributes"].update(name=["Ada"]), "attributes.name"),
        (lambda r: r["attributes"].update(externalId=123), "attributes.externalId"),
        (lambda r: r["attributes"].update(tags=["vip", 3]), "attributes.tags.1"),
        (lambda r: r["attributes"].update(timeZone={"name": "UTC"}), "attributes.timeZone"),
        (lambda r: r["attributes"].update(createdAt="yesterday"), "attributes.createdAt"),
        (lambda r: r["attributes"].update(updatedAt=1700000000), "attributes.updatedAt"),
        (lambda r: r["attributes"].update(custom=["a"]), "attributes.custom"),
        (lambda r: r["attributes"]["custom"].update(ordersNum="many"), "customFields.ordersNum"),
        (lambda r: r["relationships"].update(company="abc"), "relationships.company"),
        (lambda r: r["relationships"]["company"].update(data={"id": 7}), "relationships.company.data.id"),
        (lambda r: r["relationships"]["company"].update(data=["x"]), "relationships.company.data.0"),
        (lambda r: r.update(attributes=[1]), "attributes"),
        (lambda r: r.update(relationships="x"), "relationships"),
        (lambda r: r.pop("id"), "id"),
        (lambda r: r.update(id=5), "id"),
    ],
)
def test_wrong_types_are_mapping_errors_naming_the_path(customer: dict[str, Any], mutate: Any, field: str) -> None:
    mutate(customer)
    with pytest.raises(MappingError) as info:
        read(customer)
    assert info.value.field == field
    assert info.value.model == "genericContact"


def test_not_an_object() -> None:
    with pytest.raises(MappingError, match="expected a Kustomer resource object"):
        read(["not", "a", "resource"])


# --- write -------------------------------------------------------------------------------------------


def test_create_body_is_flat() -> None:
    contact = Contact(
        first_name="Ada",
        last_name="Lovelace",
        emails=[Email(type="work", value="ada@example.com"), Email(value="ada@home.example.org")],
        phones=[Phone(type="mobile", value="+14155550100")],
        company=ref("genericCompany", kp.COMPANY_ID),
        external_id="crm-1",
        tags=["vip"],
        locale="en-GB",
        time_zone="Europe/London",
        custom_fields={
            "loyaltyTierStr": "gold",
            "lastOrderAt": datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC),
        },
    )
    assert write(contact) == {
        "name": "Ada Lovelace",
        "emails": [{"type": "work", "email": "ada@example.com"}, {"email": "ada@home.example.org"}],
        "phones": [{"type": "mobile", "phone": "+14155550100"}],
        "company": kp.COMPANY_ID,
        "externalId": "crm-1",
        "tags": ["vip"],
        "locale": "en-GB",
        "timeZone": "Europe/London",
        "custom": {"loyaltyTierStr": "gold", "lastOrderAt": "2026-01-02T03:04:05.006Z"},
    }


def test_email_alone_on_create_becomes_the_only_entry() -> None:
    assert write(Contact(email="ada@example.com", phone="+1 415 555 0100")) == {
        "emails": [{"email": "ada@example.com"}],
        "phones": [{"phone": "+1 415 555 0100"}],
    }


def test_read_only_fields_are_never_written(customer: dict[str, Any]) -> None:
    c = read(customer, include_raw=True)
    body = write(c)
    assert not {"id", "createdAt", "updatedAt", "raw", "created_at"} & set(body)


def test_partial_first_name_keeps_last_name_from_current(customer: dict[str, Any]) -> None:
    assert write(PartialContact(first_name="Augusta"), current=customer) == {
        "name": "Augusta King Lovelace",
        "company": kp.COMPANY_ID,
    }


def test_partial_last_name_keeps_first_name_from_current(customer: dict[str, Any]) -> None:
    assert write(PartialContact(last_name="Byron"), current=customer)["name"] == "Ada Byron"


def test_clearing_last_name_keeps_first(customer: dict[str, Any]) -> None:
    assert write(PartialContact(last_name=None), current=customer)["name"] == "Ada"


def test_update_keeps_the_company_link(customer: dict[str, Any]) -> None:
    # Kustomer unlinks the company when an update omits it.
    assert write(PartialContact(locale="fr-FR"), current=customer) == {
        "locale": "fr-FR",
        "company": kp.COMPANY_ID,
    }


def test_update_keeps_company_given_as_attribute(customer: dict[str, Any]) -> None:
    del customer["relationships"]["company"]
    customer["attributes"]["company"] = kp.COMPANY_ID
    assert write(PartialContact(locale="fr-FR"), current=customer)["company"] == kp.COMPANY_ID


def test_update_without_current_company_writes_none(customer: dict[str, Any]) -> None:
    del customer["relationships"]["company"]
    assert write(PartialContact(locale="fr-FR"), current=customer) == {"locale": "fr-FR"}


def test_explicit_company_change_and_unlink(customer: dict[str, Any]) -> None:
    other = "6717c29de5b1f00012ab3499"
    assert write(PartialContact(company=ref("genericCompany", other)), current=customer)["company"] == other
    assert write(PartialContact(company=None), current=customer)["company"] is None


def test_email_alone_replaces_the_first_entry_and_keeps_the_others(customer: dict[str, Any]) -> None:
    body = write(PartialContact(email="countess@example.com"), current=customer)
    assert body["emails"] == [
        {"type": "work", "email": "countess@example.com"},
        {"type": "home", "email": "ada.lovelace@example.org", "verified": False},
    ]


def test_email_already_present_moves_to_the_front(customer: dict[str, Any]) -> None:
    body = write(PartialContact(email="ada.lovelace@example.org"), current=customer)
    assert [e["email"] for e in body["emails"]] == ["ada.lovelace@example.org", "ada@analytical.example.com"]


def test_email_none_alone_removes_the_primary(customer: dict[str, Any]) -> None:
    body = write(PartialContact(email=None), current=customer)
    assert [e["email"] for e in body["emails"]] == ["ada.lovelace@example.org"]


def test_email_with_list_is_put_first() -> None:
    body = write(Contact(email="c@example.com", emails=[Email(value="a@example.com"), Email(value="b@example.com")]))
    assert [e["email"] for e in body["emails"]] == ["c@example.com", "a@example.com", "b@example.com"]
    body = write(Contact(email="b@example.com", emails=[Email(value="a@example.com"), Email(value="b@example.com")]))
    assert [e["email"] for e in body["emails"]] == ["b@example.com", "a@example.com"]


def test_phone_alone_replaces_the_first_phone(customer: dict[str, Any]) -> None:
    body = write(PartialContact(phone="+14155550123"), current=customer)
    assert body["phones"] == [
        {"type": "mobile", "phone": "+14155550123"},
        {"type": "work", "phone": "+14155550199", "verified": False},
    ]


def test_emails_list_replaces_everything(customer: dict[str, Any]) -> None:
    body = write(PartialContact(emails=[Email(value="only@example.com")]), current=customer)
    assert body["emails"] == [{"email": "only@example.com"}]
    assert write(PartialContact(emails=None), current=customer)["emails"] == []


def test_partial_none_list_writes_empty_list(customer: dict[str, Any]) -> None:
    assert write(PartialContact(tags=None), current=customer)["tags"] == []


def test_current_with_odd_entries_is_tolerated(customer: dict[str, Any]) -> None:
    customer["attributes"]["emails"] = [None, {"email": 3}, {"type": 1, "email": "a@example.com"}]
    assert write(PartialContact(email="b@example.com"), current=customer)["emails"] == [{"email": "b@example.com"}]


def test_current_is_read_in_any_form(customer: dict[str, Any]) -> None:
    expected = write(PartialContact(first_name="Augusta"), current=customer)
    assert write(PartialContact(first_name="Augusta"), current={"data": customer}) == expected
    assert write(PartialContact(first_name="Augusta"), current=CustomerResource.model_validate(customer)) == expected


def test_malformed_current_is_a_mapping_error(customer: dict[str, Any]) -> None:
    customer["attributes"]["name"] = 5
    with pytest.raises(MappingError) as info:
        write(PartialContact(first_name="X"), current=customer)
    assert info.value.field == "current.attributes.name"
    customer["relationships"]["company"] = {"data": {"id": 3}}
    with pytest.raises(MappingError) as info:
        write(PartialContact(locale="x"), current=customer)
    assert info.value.field == "current.relationships.company.data.id"
    with pytest.raises(MappingError) as info:
        write(PartialContact(first_name="X"), current={"attributes": {}})
    assert info.value.field == "current.id"


def test_wrong_unified_type_is_refused() -> None:
    from unified_models import Company

    with pytest.raises(MappingError, match="expected a Contact"):
        M.to_provider(Company(name="x"), kp.ctx("genericContact"))


def test_read_then_write_round_trip(customer: dict[str, Any]) -> None:
    c = read(customer)
    again = read(kp.respond("customer", write(c), kp.CUSTOMER_ID, createdAt=kp.T0, updatedAt=kp.T0))
    assert again.model_dump(exclude={"created_at", "updated_at"}) == c.model_dump(exclude={"created_at", "updated_at"})
