"""connectors.kustomer.custom_fields: suffix naming, value rules (examples + properties)."""

from __future__ import annotations

import contextlib
import math
import re
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.errors import ConnectorError
from connectors.kustomer.custom_fields import (
    STR_MAX_LENGTH,
    SUFFIX_FOR_TYPE,
    SUFFIXES,
    CustomAttributeError,
    derive_attribute_name,
    format_datetime,
    parse_attribute_name,
    parse_datetime,
    validate_custom_attributes,
    validate_value,
)

suffixes = st.sampled_from(list(SUFFIXES))
bases = st.from_regex(r"[a-z][A-Za-z0-9]{0,20}", fullmatch=True)


def test_suffix_table_is_ordered_and_complete() -> None:
    assert list(SUFFIXES) == ["Str", "Txt", "Num", "At", "Bool", "Url", "Id", "Tree"]
    assert SUFFIXES["Id"] == "reference"
    assert SUFFIXES["Tree"] == "text"
    assert all(SUFFIXES[suffix] == kind for kind, suffix in SUFFIX_FOR_TYPE.items())


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("loyaltyTierStr", ("loyaltyTier", "Str")),
        ("notesTxt", ("notes", "Txt")),
        ("lifetimeValueNum", ("lifetimeValue", "Num")),
        ("lastOrderAt", ("lastOrder", "At")),
        ("marketingOptInBool", ("marketingOptIn", "Bool")),
        ("accountUrl", ("account", "Url")),
        ("assignedUserId", ("assignedUser", "Id")),
        ("contactReasonTree", ("contactReason", "Tree")),
        ("AgeNum", ("Age", "Num")),
    ],
)
def test_parse_attribute_name(name: str, expected: tuple[str, str]) -> None:
    assert parse_attribute_name(name) == expected


@pytest.mark.parametrize("name", ["loyaltyTier", "fooString", "fooid", "Str", "foo-barStr", "foo barNum", ""])
def test_parse_attribute_name_rejects(name: str) -> None:
    with pytest.raises(CustomAttributeError) as info:
        parse_attribute_name(name)
    assert info.value.name == name
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, ConnectorError)
    assert info.value.to_dict()["attribute"] == name


@pytest.mark.parametrize(
    ("display", "suffix", "expected"),
    [
        ("Assigned User", "Id", "assignedUserId"),
        ("Order ID", "Str", "orderIdStr"),
        ("OrderID", "Str", "orderIdStr"),
        ("Lifetime value ($)", "Num", "lifetimeValueNum"),
        ("Café crème", "Txt", "cafeCremeTxt"),
        ("don't call", "Bool", "dontCallBool"),
        ("XMLHttpRequest", "Url", "xmlHttpRequestUrl"),
        ("2nd address", "Str", "2ndAddressStr"),
        ("Level 1 > Item 1", "Tree", "level1Item1Tree"),
    ],
)
def test_derive_attribute_name_examples(display: str, suffix: str, expected: str) -> None:
    assert derive_attribute_name(display, suffix) == expected


def test_derive_attribute_name_errors() -> None:
    with pytest.raises(CustomAttributeError):
        derive_attribute_name("Name", "String")
    with pytest.raises(CustomAttributeError):
        derive_attribute_name("!!! ---", "Str")


@given(st.text(max_size=40), suffixes)
def test_derived_names_parse_back(display: str, suffix: str) -> None:
    try:
        name = derive_attribute_name(display, suffix)
    except CustomAttributeError:
        assert not re.search(r"[A-Za-z0-9]", display.encode("ascii", "ignore").decode())
        return
    base, parsed_suffix = parse_attribute_name(name)
    assert parsed_suffix == suffix
    assert re.fullmatch(r"[A-Za-z0-9]+", base)


words = st.lists(st.from_regex(r"[A-Za-z][a-z]{1,8}", fullmatch=True), min_size=1, max_size=5)


@given(words, st.sampled_from([" ", "  ", " - ", "_", "/"]), suffixes)
def test_derive_is_stable_on_its_own_output(parts: list[str], sep: str, suffix: str) -> None:
    """For display names made of words (lodash camelCase is not idempotent on one-letter words)."""
    name = derive_attribute_name(sep.join(parts), suffix)
    base, _ = parse_attribute_name(name)
    assert derive_attribute_name(base, suffix) == name
    assert name[0].islower()


@given(bases, suffixes)
def test_parse_roundtrip(base: str, suffix: str) -> None:
    assert parse_attribute_name(base + suffix) == (base, suffix)


def test_validate_value_examples() -> None:
    assert validate_value("tierStr", "gold") == "gold"
    assert validate_value("ageNum", "42") == 42
    assert validate_value("ageNum", "4.5") == 4.5
    assert validate_value("ageNum", 7) == 7
    assert validate_value("optInBool", "TRUE") is True
    assert validate_value("optInBool", False) is False
    assert validate_value("lastOrderAt", "2026-10-02T15:04:05Z") == "2026-10-02T15:04:05.000Z"
    assert validate_value("lastOrderAt", "2026-10-02") == "2026-10-02T00:00:00.000Z"
    assert validate_value("lastOrderAt", "2026-10-02T17:04:05.123+02:00") == "2026-10-02T15:04:05.123Z"
    assert validate_value("lastOrderAt", 0) == "1970-01-01T00:00:00.000Z"
    assert validate_value("siteUrl", " https://example.com/x ") == "https://example.com/x"
    assert validate_value("siteUrl", "www.kustomer.com") == "www.kustomer.com"
    assert validate_value("ownerId", "ABCDEF0123456789ABCDEF01") == "abcdef0123456789abcdef01"
    assert validate_value("ownerId", ["abcdef0123456789abcdef01"]) == ["abcdef0123456789abcdef01"]
    for name in ("aStr", "aTxt", "aNum", "aAt", "aBool", "aUrl", "aId", "aTree"):
        assert validate_value(name, None) is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("tierStr", 5),
        ("tierStr", "x" * (STR_MAX_LENGTH + 1)),
        ("ageNum", True),
        ("ageNum", "twelve"),
        ("ageNum", math.inf),
        ("ageNum", [1]),
        ("optInBool", 1),
        ("optInBool", "yes"),
        ("lastOrderAt", "yesterday"),
        ("lastOrderAt", True),
        ("siteUrl", "not a url"),
        ("ownerId", "123"),
        ("ownerId", 12),
        ("reasonTree", 3),
        ("weirdSuffix", "x"),
    ],
)
def test_validate_value_rejects(name: str, value: object) -> None:
    with pytest.raises(CustomAttributeError) as info:
        validate_value(name, value)
    assert name in str(info.value)


@given(st.text(max_size=STR_MAX_LENGTH))
def test_any_short_string_is_a_valid_str(value: str) -> None:
    assert validate_value("xStr", value) == value


@given(st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False)))
def test_finite_numbers_are_valid_num(value: float) -> None:
    assert validate_value("xNum", value) == value


@given(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)))
def test_at_normalisation_is_idempotent(value: datetime) -> None:
    once = validate_value("xAt", value.isoformat())
    assert validate_value("xAt", once) == once
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z", once)
    assert parse_datetime(once) == value.replace(microsecond=value.microsecond // 1000 * 1000)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=40)
    | st.datetimes().map(lambda d: d.isoformat())
    | st.sampled_from(["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2026-02-30", "1e999"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


@given(suffixes, json_values)
def test_validate_value_is_total(suffix: str, value: object) -> None:
    """Any JSON value either validates or raises CustomAttributeError; nothing else escapes."""
    with contextlib.suppress(CustomAttributeError):
        validate_value("x" + suffix, value)


@given(st.integers(min_value=-(10**30), max_value=10**30) | st.text(max_size=30))
def test_parse_datetime_raises_only_value_error(value: object) -> None:
    try:
        parsed = parse_datetime(value)
    except ValueError:
        return
    assert parsed.tzinfo is UTC


def test_extreme_dates() -> None:
    assert validate_value("xAt", "0001-01-01") == "0001-01-01T00:00:00.000Z"
    assert validate_value("xAt", "0999-05-06T07:08:09Z") == "0999-05-06T07:08:09.000Z"
    with pytest.raises(CustomAttributeError):
        validate_value("xAt", "0001-01-01T00:00:00+01:00")
    with pytest.raises(CustomAttributeError):
        validate_value("xAt", 10**400)


def test_format_datetime_naive_is_utc() -> None:
    assert format_datetime(datetime(2026, 1, 2, 3, 4, 5, 678000)) == "2026-01-02T03:04:05.678Z"


def test_validate_custom_attributes_keeps_order() -> None:
    values = {"bNum": "1", "aStr": "x", "cBool": "false"}
    assert list(validate_custom_attributes(values).items()) == [("bNum", 1), ("aStr", "x"), ("cBool", False)]
