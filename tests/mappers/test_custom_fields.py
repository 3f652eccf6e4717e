"""Custom attribute coercion in both directions, through the contact and company mappers."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import kustomer_payloads as kp
import pytest

from connectors.errors import MappingError
from connectors.kustomer.mappers import CompanyMapper, ContactMapper
from connectors.kustomer.mappers._common import coerce_custom
from unified_models import Company, Contact, partial

C = ContactMapper()


def read_custom(custom: dict[str, Any], **kw: Any) -> dict[str, Any]:
    resource = {"type": "customer", "id": kp.CUSTOMER_ID, "attributes": {"custom": custom}}
    return C.to_unified(resource, kp.ctx("genericContact", **kw)).custom_fields


def write_custom(custom_fields: dict[str, Any], **kw: Any) -> dict[str, Any]:
    obj = partial(Contact)(custom_fields=custom_fields)
    return C.to_provider(obj, kp.ctx("genericContact", **kw)).get("custom", {})


# --- read --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("tierStr", "gold", "gold"),
        ("notesTxt", "line 1\nline 2", "line 1\nline 2"),
        ("pageUrl", "https://example.com", "https://example.com"),
        ("reasonTree", "Billing > Refund", "Billing > Refund"),
        ("ownerId", kp.USER_ID, kp.USER_ID),
        ("watchersId", [kp.USER_ID, kp.USER2_ID], [kp.USER_ID, kp.USER2_ID]),
        ("ordersNum", 12, 12),
        ("ordersNum", 12.0, 12),
        ("ltvNum", 1840.5, 1840.5),
        ("ltvNum", "1840.5", 1840.5),
        ("ordersNum", "7", 7),
        ("optInBool", True, True),
        ("optInBool", "false", False),
        ("lastAt", "2026-10-02T15:04:05.000Z", datetime(2026, 10, 2, 15, 4, 5, tzinfo=UTC)),
        ("lastAt", "2026-10-02T17:04:05+02:00", datetime(2026, 10, 2, 15, 4, 5, tzinfo=UTC)),
        ("lastAt", "2026-10-02", datetime(2026, 10, 2, tzinfo=UTC)),
        ("lastAt", 1_790_000_000_000, datetime.fromtimestamp(1_790_000_000, tz=UTC)),
        ("anyAt", None, None),
        ("anyNum", None, None),
    ],
)
def test_read_coercion_by_suffix(name: str, value: Any, expected: Any) -> None:
    got = read_custom({name: value})[name]
    assert got == expected
    assert type(got) is type(expected)


@pytest.mark.parametrize(("name", "value"), [("weird", {"x": 1}), ("legacy_field", 5), ("Str", "x"), ("a-b", [1])])
def test_unknown_suffix_on_read_keeps_the_raw_value(name: str, value: Any) -> None:
    assert read_custom({name: value}) == {name: value}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ordersNum", "many"),
        ("ordersNum", True),
        ("ordersNum", [1]),
        ("optInBool", "yes"),
        ("optInBool", 1),
        ("lastAt", "tomorrow"),
        ("lastAt", True),
        ("lastAt", {"date": "2026-01-01"}),
        ("lastAt", "0001-01-01T00:00:00+01:00"),
        ("lastAt", 10**20),
    ],
)
def test_unparseable_read_values_name_the_custom_field(name: str, value: Any) -> None:
    with pytest.raises(MappingError) as info:
        read_custom({name: value})
    assert info.value.field == f"customFields.{name}"


def test_unparseable_value_names_the_unified_key() -> None:
    with pytest.raises(MappingError) as info:
        read_custom({"ordersNum": "many"}, fields={"orders": "ordersNum"})
    assert info.value.field == "customFields.orders"


def test_field_mapping_on_read() -> None:
    custom = {"loyaltyTierStr": "gold", "otherStr": "x"}
    assert read_custom(custom, fields={"tier": "loyaltyTierStr"}) == {"tier": "gold", "otherStr": "x"}
    assert read_custom(custom, fields={"tier": "loyaltyTierStr"}, passthrough=False) == {"tier": "gold"}


def test_coerce_custom_helper() -> None:
    assert coerce_custom("aNum", 2.0) == 2
    assert coerce_custom("aStr", None) is None


# --- write -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("tierStr", "gold", "gold"),
        ("notesTxt", "x" * 5000, "x" * 5000),
        ("ordersNum", 3, 3),
        ("ordersNum", "3", 3),
        ("ltvNum", 2.5, 2.5),
        ("optInBool", "true", True),
        ("lastAt", datetime(2026, 1, 2, 3, 4, 5, 678900, tzinfo=UTC), "2026-01-02T03:04:05.678Z"),
        ("lastAt", "2026-01-02T05:04:05+02:00", "2026-01-02T03:04:05.000Z"),
        ("lastAt", date(2026, 1, 2), "2026-01-02T00:00:00.000Z"),
        ("pageUrl", "https://example.com/x", "https://example.com/x"),
        ("ownerId", kp.USER_ID.upper(), kp.USER_ID),
        ("watchersId", [kp.USER_ID, kp.USER2_ID], [kp.USER_ID, kp.USER2_ID]),
        ("reasonTree", "A > B", "A > B"),
    ],
)
def test_write_normalises_values(name: str, value: Any, expected: Any) -> None:
    assert write_custom({name: value}) == {name: expected}


@pytest.mark.parametrize("name", ["tierStr", "ordersNum", "lastAt", "optInBool", "ownerId", "pageUrl"])
def test_none_clears(name: str) -> None:
    assert write_custom({name: None}) == {name: None}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("tier", "gold"),  # no suffix
        ("Str", "gold"),  # nothing before the suffix
        ("tier_levelStr", "gold"),  # not alphanumeric
        ("tierStr", 5),
        ("tierStr", "x" * 1025),
        ("ordersNum", "many"),
        ("ordersNum", True),
        ("ordersNum", float("inf")),
        ("optInBool", "maybe"),
        ("lastAt", "someday"),
        ("lastAt", datetime(1, 1, 1, tzinfo=UTC).replace(tzinfo=None).isoformat() + "+05:00"),
        ("ownerId", "not-an-id"),
        ("watchersId", [kp.USER_ID, 3]),
        ("pageUrl", "not a url"),
    ],
)
def test_invalid_writes_are_refused_before_any_request(name: str, value: Any) -> None:
    with pytest.raises(MappingError) as info:
        write_custom({name: value})
    assert info.value.field == f"customFields.{name}"
    assert info.value.model == "genericContact"


def test_field_mapping_on_write() -> None:
    assert write_custom({"tier": "gold", "ordersNum": 2}, fields={"tier": "loyaltyTierStr"}) == {
        "loyaltyTierStr": "gold",
        "ordersNum": 2,
    }


def test_unmapped_key_without_passthrough_is_refused() -> None:
    with pytest.raises(MappingError) as info:
        write_custom({"ordersNum": 2}, fields={"tier": "loyaltyTierStr"}, passthrough=False)
    assert info.value.field == "customFields.ordersNum"


def test_mapped_attribute_with_bad_suffix_names_the_unified_key() -> None:
    with pytest.raises(MappingError) as info:
        write_custom({"tier": "gold"}, fields={"tier": "loyaltyTier"})
    assert info.value.field == "customFields.tier"


def test_company_custom_round_trip() -> None:
    m = CompanyMapper()
    body = m.to_provider(
        Company(name="X", custom_fields={"arrNum": 10.0, "renewalAt": datetime(2027, 1, 1, tzinfo=UTC)}),
        kp.ctx("genericCompany"),
    )
    assert body["custom"] == {"arrNum": 10.0, "renewalAt": "2027-01-01T00:00:00.000Z"}
    again = m.to_unified(kp.respond("company", body, kp.COMPANY_ID), kp.ctx("genericCompany"))
    assert again.custom_fields == {"arrNum": 10, "renewalAt": datetime(2027, 1, 1, tzinfo=UTC)}
