"""Timestamps and ids: epoch milliseconds inside, Kustomer's formats outside."""

from __future__ import annotations

import hashlib
import itertools
import time
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connectors.kustomer.custom_fields import parse_datetime

__all__ = ["IdFactory", "iso", "parse_ms", "to_ms"]


@lru_cache(maxsize=65536)
def iso(ms: int) -> str:
    """Format epoch milliseconds as Kustomer does: ``2026-10-21T14:02:11.925Z``."""
    seconds, millis = divmod(ms, 1000)
    t = time.gmtime(seconds)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{millis:03d}Z"


def to_ms(value: datetime) -> int:
    """Epoch milliseconds of an aware (or naive = UTC) datetime."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return round(value.timestamp() * 1000)


def parse_ms(value: object, *, time_zone: str | None = None) -> int:
    """Parse a request date-time into epoch milliseconds.

    Args:
        value: ISO 8601 string (UTC unless it carries an offset), ``YYYY-MM-DD`` date, or epoch ms.
        time_zone: IANA zone a bare ``YYYY-MM-DD`` date is local to (search's ``timeZone``); default UTC.

    Returns:
        Epoch milliseconds.

    Raises:
        ValueError: not a date-time, or an unknown time zone.
    """
    if time_zone and isinstance(value, str) and len(value.strip()) == 10:
        try:
            zone = ZoneInfo(time_zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timeZone {time_zone!r}") from exc
        day = parse_datetime(value)
        return to_ms(datetime(day.year, day.month, day.day, tzinfo=zone))
    return to_ms(parse_datetime(value))


class IdFactory:
    """Deterministic, monotonically increasing 24-hex ids shaped like MongoDB ObjectIds.

    Layout: 8 hex 'timestamp' (fixed per seed, bumped every 16M ids), 10 hex 'machine' (from the seed),
    6 hex counter. Ids sort in creation order, so "by id" means "by creation".
    """

    def __init__(self, seed: int) -> None:
        digest = hashlib.sha256(f"kustomer-sandbox:{seed}".encode()).digest()
        self._timestamp = 0x64000000 + int.from_bytes(digest[:3], "big")
        self._machine = digest[3:8].hex()
        self._counter = itertools.count(int.from_bytes(digest[8:10], "big"))

    def new(self) -> str:
        """Return the next id."""
        n = next(self._counter)
        return f"{self._timestamp + (n >> 24):08x}{self._machine}{n & 0xFFFFFF:06x}"
