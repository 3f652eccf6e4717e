"""Kustomer custom attributes: type-suffix naming and value rules.

Kustomer stores custom attributes under ``attributes.custom`` and encodes each attribute's type in the last
part of its name (kustomer-api.md §3.3)::

    loyaltyTierStr      Str   single-line string, at most 1,024 characters
    notesTxt            Txt   multi-line text
    lifetimeValueNum    Num   number
    lastOrderAt         At    ISO 8601 date-time
    marketingOptInBool  Bool  boolean
    accountUrl          Url   URL
    assignedUserId      Id    reference to another object (needs metadata with a ``target``)
    contactReasonTree   Tree  multi-level list value, stored as a string

Every type accepts ``null``, which clears the attribute. A name without one of these suffixes is refused by
Kustomer with a 400 (and by this module with :class:`CustomAttributeError`).

Both sides of the project use these functions: the connector to validate and coerce values before it sends
them, the sandbox to answer exactly as Kustomer would. Everything here is pure (no I/O, no global state).

Value coercion follows Kustomer's request validation, which converts obvious string forms the way Joi's
default ``convert`` mode does: ``"12.5"`` is accepted for a ``Num``, ``"true"``/``"false"`` for a ``Bool``,
and an ``At`` accepts an ISO 8601 string, a ``YYYY-MM-DD`` date (midnight UTC) or epoch **milliseconds**;
``At`` values are normalised to ``YYYY-MM-DDTHH:MM:SS.sssZ``. Booleans are never numbers and numbers are
never strings.
"""

from __future__ import annotations

import math
import re
import reprlib
import unicodedata
from collections.abc import Mapping
from datetime import UTC, date, datetime
from types import MappingProxyType
from typing import Any, Final, Literal

from connectors.errors import ConnectorError

__all__ = [
    "STR_MAX_LENGTH",
    "SUFFIXES",
    "SUFFIX_FOR_TYPE",
    "TREE_MAX_LENGTH",
    "URL_MAX_LENGTH",
    "CustomAttributeError",
    "UnifiedFieldType",
    "derive_attribute_name",
    "format_datetime",
    "is_object_id",
    "parse_attribute_name",
    "parse_datetime",
    "validate_custom_attributes",
    "validate_value",
]

UnifiedFieldType = Literal["text", "number", "datetime", "boolean", "url", "reference"]
"""The unified field type a Kustomer suffix maps to."""

SUFFIXES: Final[Mapping[str, UnifiedFieldType]] = MappingProxyType(
    {
        "Str": "text",
        "Txt": "text",
        "Num": "number",
        "At": "datetime",
        "Bool": "boolean",
        "Url": "url",
        "Id": "reference",
        "Tree": "text",
    }
)
"""Type suffix -> unified field type, in Kustomer's documentation order."""

SUFFIX_FOR_TYPE: Final[Mapping[UnifiedFieldType, str]] = MappingProxyType(
    {"text": "Str", "number": "Num", "datetime": "At", "boolean": "Bool", "url": "Url", "reference": "Id"}
)
"""The suffix to use when creating an attribute of a unified field type (``text`` -> ``Str``)."""

STR_MAX_LENGTH: Final = 1024
"""Longest ``Str`` value Kustomer accepts."""
TREE_MAX_LENGTH: Final = 1024
"""Longest ``Tree`` value accepted (a tree path is stored as a string; the limit is UNCONFIRMED)."""
URL_MAX_LENGTH: Final = 2048
"""Longest ``Url`` value accepted (UNCONFIRMED; Kustomer documents ``Url`` as a string/uri)."""

_BASE_RE: Final = re.compile(r"[A-Za-z0-9]+")
_OBJECT_ID_RE: Final = re.compile(r"[0-9a-fA-F]{24}")
_INT_RE: Final = re.compile(r"[+-]?\d+")
_DATE_RE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")
_URL_RE: Final = re.compile(
    r"(?:[A-Za-z][A-Za-z0-9+.-]*://)?"  # optional scheme (Kustomer's UI accepts "www.kustomer.com")
    r"[^\s/?#]+\.[^\s/?#]+"  # host with at least one dot
    r"(?:[/?#]\S*)?"
)
_URL_LOCAL_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#]+(?:[/?#]\S*)?")
# lodash's ``unicodeWords`` restricted to ASCII (Kustomer's web app derives names with lodash ``camelCase``).
_WORD_RE: Final = re.compile(
    r"[A-Z]?[a-z]+(?=[^A-Za-z0-9]|[A-Z]|$)"
    r"|[A-Z]+(?=[^A-Za-z0-9]|[A-Z][a-z]|$)"
    r"|[A-Z]?[a-z]+"
    r"|[A-Z]+"
    r"|\d*(?:1ST|2ND|3RD|(?![123])\dTH)(?=\b|[a-z_])"
    r"|\d*(?:1st|2nd|3rd|(?![123])\dth)(?=\b|[A-Z_])"
    r"|\d+",
    re.ASCII,
)
_APOSTROPHES: Final = re.compile("['\u2019]")


class CustomAttributeError(ConnectorError, ValueError):
    """A custom attribute name or value that Kustomer would refuse.

    Attributes:
        name: the attribute name (or display name) concerned.
        reason: why it is refused, without the name.
    """

    code = "custom_attribute_error"

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"custom attribute {name!r}: {reason}")
        self.name = name
        self.reason = reason

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe description including the attribute name and the reason."""
        return {**super().to_dict(), "attribute": self.name, "reason": self.reason}


def parse_attribute_name(name: str) -> tuple[str, str]:
    """Split a custom attribute name into its base and its type suffix.

    Args:
        name: e.g. ``"loyaltyTierStr"``.

    Returns:
        ``(base, suffix)``, e.g. ``("loyaltyTier", "Str")``.

    Raises:
        CustomAttributeError: the name has no known suffix, nothing before the suffix, or characters other
            than ASCII letters and digits.
    """
    if not isinstance(name, str) or not name:
        raise CustomAttributeError(str(name), "the name must be a non-empty string")
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            base = name[: -len(suffix)]
            break
    else:
        raise CustomAttributeError(name, f"unknown type suffix; the name must end with one of {', '.join(SUFFIXES)}")
    if not base:
        raise CustomAttributeError(name, f"the name needs a base before the {suffix!r} type suffix")
    if not _BASE_RE.fullmatch(base):
        raise CustomAttributeError(name, "the name may only contain ASCII letters and digits")
    return base, suffix


def derive_attribute_name(display_name: str, suffix: str) -> str:
    """Derive the attribute name Kustomer generates from a display name and a type suffix.

    Kustomer camel-cases the display name the way lodash's ``camelCase`` does (accents are stripped,
    apostrophes dropped, words split at non-alphanumerics, case changes and digit runs; the first word is
    lower-cased and the others capitalised) and appends the suffix: ``"Assigned User"`` + ``Id`` ->
    ``"assignedUserId"``, ``"Order ID"`` + ``Str`` -> ``"orderIdStr"``. Characters that have no ASCII
    form (e.g. CJK) are dropped.

    Args:
        display_name: the human-facing name, e.g. ``"Assigned User"``.
        suffix: one of :data:`SUFFIXES` (``"Id"``).

    Returns:
        The attribute name, e.g. ``"assignedUserId"``.

    Raises:
        CustomAttributeError: ``suffix`` is unknown, or the display name has no letter or digit.
    """
    if suffix not in SUFFIXES:
        raise CustomAttributeError(display_name, f"unknown type suffix {suffix!r}")
    ascii_text = unicodedata.normalize("NFKD", display_name).encode("ascii", "ignore").decode("ascii")
    words: list[str] = _WORD_RE.findall(_APOSTROPHES.sub("", ascii_text))
    if not words:
        raise CustomAttributeError(display_name, "the display name has no letters or digits")
    first, *rest = (word.lower() for word in words)
    return first + "".join(word[:1].upper() + word[1:] for word in rest) + suffix


def is_object_id(value: object) -> bool:
    """Return whether ``value`` is a 24-hex-digit id, the form of every Kustomer object id."""
    return isinstance(value, str) and _OBJECT_ID_RE.fullmatch(value) is not None


def parse_datetime(value: object) -> datetime:
    """Parse a date-time the way Kustomer's validation accepts it.

    Args:
        value: an ISO 8601 string (``Z`` or an offset; no offset means UTC), a ``YYYY-MM-DD`` date
            (midnight UTC), epoch milliseconds (int or float), or a ``datetime``/``date``.

    Returns:
        An aware ``datetime`` in UTC.

    Raises:
        ValueError: the value is not a date-time (booleans never are), or lies outside the years 1-9999.
    """
    try:
        parsed = _to_datetime(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (OverflowError, OSError) as exc:
        raise ValueError(f"{reprlib.repr(value)} is out of range") from exc


def _to_datetime(value: object) -> datetime:
    if isinstance(value, bool):
        raise ValueError("a boolean is not a date-time")  # noqa: TRY004 - documented as ValueError
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, int | float):
        milliseconds = float(value)
        if not math.isfinite(milliseconds):
            raise ValueError("not a finite timestamp")
        return datetime.fromtimestamp(milliseconds / 1000, tz=UTC)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError("an empty string is not a date-time")
        try:
            if _DATE_RE.fullmatch(text):
                return datetime.combine(date.fromisoformat(text), datetime.min.time())
            return datetime.fromisoformat(text)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an ISO 8601 date-time") from exc
    raise ValueError(f"a {type(value).__name__} is not a date-time")


def format_datetime(value: datetime) -> str:
    """Format a date-time as Kustomer does: UTC, milliseconds, ``Z`` (``2026-10-21T14:02:11.925Z``).

    Args:
        value: aware or naive (naive is taken as UTC) date-time.

    Returns:
        The formatted string (years below 1000 zero-padded).

    Raises:
        OverflowError: an aware value whose UTC form falls outside the years 1-9999.
    """
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T{value.hour:02d}:{value.minute:02d}:"
        f"{value.second:02d}.{value.microsecond // 1000:03d}Z"
    )


def _string(name: str, value: object, max_length: int | None) -> str:
    if not isinstance(value, str):
        raise CustomAttributeError(name, f"expected a string, got {type(value).__name__}")
    if max_length is not None and len(value) > max_length:
        raise CustomAttributeError(name, f"the value is longer than {max_length} characters")
    return value


def _number(name: str, value: object) -> int | float:
    if isinstance(value, bool):
        raise CustomAttributeError(name, "expected a number, got bool")
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text) if _INT_RE.fullmatch(text) else float(text)
        except ValueError:
            raise CustomAttributeError(name, f"expected a number, got the string {text!r}") from None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CustomAttributeError(name, "the number must be finite")
        return value
    raise CustomAttributeError(name, f"expected a number, got {type(value).__name__}")


def _boolean(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise CustomAttributeError(name, f"expected a boolean, got {type(value).__name__}")


def _url(name: str, value: object) -> str:
    text = _string(name, value, URL_MAX_LENGTH).strip()
    if not (_URL_RE.fullmatch(text) or _URL_LOCAL_RE.fullmatch(text)):
        raise CustomAttributeError(name, f"{text!r} is not a URL")
    return text


def _reference(name: str, value: object) -> str | list[str]:
    if isinstance(value, list):
        return [_one_reference(name, item) for item in value]
    return _one_reference(name, value)


def _one_reference(name: str, value: object) -> str:
    if not is_object_id(value):
        raise CustomAttributeError(name, f"expected a 24-hex-digit object id, got {value!r}")
    assert isinstance(value, str)
    return value.lower()


def validate_value(name: str, value: object) -> Any:
    """Check a custom attribute value against the type its name declares and normalise it.

    Args:
        name: the attribute name; its suffix gives the type.
        value: the value as it would be sent to Kustomer.

    Returns:
        The value Kustomer would store: ``None`` for ``None`` (clears the attribute); ``str`` for ``Str``
        (at most :data:`STR_MAX_LENGTH`), ``Txt``, ``Tree`` (at most :data:`TREE_MAX_LENGTH`) and ``Url``
        (stripped); ``int``/``float`` for ``Num`` (numeric strings converted); ``bool`` for ``Bool``
        (``"true"``/``"false"`` converted); a ``...Z`` timestamp string for ``At``; a lower-cased object id,
        or a list of them (multi-valued reference), for ``Id``.

    Raises:
        CustomAttributeError: the name has no valid suffix or the value is not of its type. Whether an
            ``Id`` value refers to an existing object needs the attribute's metadata and is not checked here.
    """
    _, suffix = parse_attribute_name(name)
    if value is None:
        return None
    if suffix == "Str":
        return _string(name, value, STR_MAX_LENGTH)
    if suffix == "Txt":
        return _string(name, value, None)
    if suffix == "Tree":
        return _string(name, value, TREE_MAX_LENGTH)
    if suffix == "Num":
        return _number(name, value)
    if suffix == "Bool":
        return _boolean(name, value)
    if suffix == "Url":
        return _url(name, value)
    if suffix == "Id":
        return _reference(name, value)
    try:  # "At"
        return format_datetime(parse_datetime(value))
    except ValueError as exc:
        raise CustomAttributeError(name, f"expected an ISO 8601 date-time: {exc}") from None


def validate_custom_attributes(values: Mapping[str, Any]) -> dict[str, Any]:
    """Validate and normalise a whole ``custom`` object with :func:`validate_value`.

    Args:
        values: attribute name -> value.

    Returns:
        A new dict with normalised values, in the same order.

    Raises:
        CustomAttributeError: for the first invalid name or value.
    """
    return {name: validate_value(name, value) for name, value in values.items()}
