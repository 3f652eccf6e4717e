"""vcrpy configuration of the cassette backend, the leak guard and the cassette audit.

Cassettes are matched on ``method``, ``path``, ``query`` and ``body`` (never scheme, host or port: the sandbox
listens on a random port, and a live org has its own host), so a cassette pins exactly what the connector
sends. :func:`vcr_config` wires a :class:`~connectors.testing.Scrubber` into vcrpy, plus a guard that refuses
to *save* an interaction that still holds a secret. :func:`audit_cassette` re-reads a cassette file and lists
everything that must never be committed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from connectors.testing._scrub import PLACEHOLDER_PREFIX, Scrubber, is_fictional_phone, is_reserved_email

__all__ = [
    "MATCH_ON",
    "CassetteLeak",
    "Leak",
    "audit_cassette",
    "audit_cassettes",
    "leak_guard",
    "unplayed",
    "vcr_config",
]

MATCH_ON: Final = ("method", "path", "query", "body")
"""What a replayed request must equal: the wire contract (headers, scheme, host and port are not part of it)."""

_EMAIL_RE: Final = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_JWT_RE: Final = re.compile(r"eyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]*")
_BEARER_RE: Final = re.compile(r"(?i)\bbearer\s+(?!" + re.escape(PLACEHOLDER_PREFIX) + r")[A-Za-z0-9._~+/=-]{6,}")
_PHONE_VALUE_RE: Final = re.compile(r'"[A-Za-z]*[Pp]hone"\s*:\s*"(\+?[0-9][0-9 ().-]{6,})"')
_CREDENTIAL_HEADERS: Final = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"})


@dataclass(frozen=True, slots=True)
class Leak:
    """Something in a cassette that must not be committed.

    Attributes:
        path: the cassette file (or ``<interaction>`` for an unsaved one).
        where: which part of which interaction (``interactions[3].response.body``).
        kind: ``secret``, ``bearer``, ``jwt``, ``credential-header``, ``email`` or ``phone``.
        excerpt: a redacted excerpt (never the secret itself).
    """

    path: str
    where: str
    kind: str
    excerpt: str

    def __str__(self) -> str:
        return f"{self.path}: {self.where}: {self.kind} ({self.excerpt})"


class CassetteLeak(AssertionError):
    """A cassette (or an interaction about to be saved) holds a secret or personal data."""

    def __init__(self, leaks: Iterable[Leak]) -> None:
        self.leaks = tuple(leaks)
        lines = "\n  ".join(str(leak) for leak in self.leaks[:20])
        more = f"\n  ... and {len(self.leaks) - 20} more" if len(self.leaks) > 20 else ""
        super().__init__(f"{len(self.leaks)} leak(s) in recorded HTTP interactions:\n  {lines}{more}")


def _redact(text: str, start: int, end: int) -> str:
    found = text[start:end]
    shown = found[:4] + "…" if len(found) > 4 else "…"
    return f"{text[max(0, start - 24) : start]}[{shown}]"


def _scan_text(text: str, *, path: str, where: str, secrets: Iterable[str]) -> Iterator[Leak]:
    for secret in secrets:
        index = text.find(secret)
        if index >= 0:
            yield Leak(path, where, "secret", _redact(text, index, index + len(secret)))
    for match in _BEARER_RE.finditer(text):
        yield Leak(path, where, "bearer", _redact(text, match.start(), match.end()))
    for match in _JWT_RE.finditer(text):
        yield Leak(path, where, "jwt", _redact(text, match.start(), match.end()))
    for match in _EMAIL_RE.finditer(text):
        if not is_reserved_email(match.group(0)):
            yield Leak(path, where, "email", _redact(text, match.start(), match.end()))
    for match in _PHONE_VALUE_RE.finditer(text):
        if not is_fictional_phone(match.group(1)):
            yield Leak(path, where, "phone", _redact(text, match.start(1), match.end(1)))


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _scan_interaction(
    request: Mapping[str, Any], response: Mapping[str, Any], *, path: str, where: str, secrets: Iterable[str]
) -> list[Leak]:
    secrets = tuple(secrets)
    leaks: list[Leak] = []
    for part, headers in (("request", request.get("headers")), ("response", response.get("headers"))):
        for name, value in (headers or {}).items():
            if str(name).lower() in _CREDENTIAL_HEADERS:
                leaks.append(Leak(path, f"{where}.{part}.headers", "credential-header", f"{name}: [...]"))
            leaks += _scan_text(_text(value), path=path, where=f"{where}.{part}.headers.{name}", secrets=secrets)
    leaks += _scan_text(_text(request.get("uri", "")), path=path, where=f"{where}.request.uri", secrets=secrets)
    leaks += _scan_text(_text(request.get("body")), path=path, where=f"{where}.request.body", secrets=secrets)
    body = (response.get("body") or {}).get("string") if isinstance(response.get("body"), Mapping) else None
    leaks += _scan_text(_text(body or ""), path=path, where=f"{where}.response.body", secrets=secrets)
    return leaks


def audit_cassette(path: str | Path, *, secrets: Iterable[str] = ()) -> list[Leak]:
    """List the leaks in one cassette file.

    Looks for: the given ``secrets`` (values the test run seeded), ``Bearer`` values and JWTs, credential
    headers (``Authorization``, cookies), emails outside the reserved example domains and phone numbers outside
    the fictional range, in every request URI, header and body and every response header and body. It reads
    the YAML (so values folded across lines are still found) and also scans the raw text.

    Args:
        path: the cassette (vcrpy YAML).
        secrets: values that must not appear anywhere in it.

    Returns:
        The leaks found (empty when the cassette is clean).
    """
    from vcr.serializers import yamlserializer

    file = Path(path)
    text = file.read_text(encoding="utf-8")
    secrets = tuple(secrets)
    data = yamlserializer.deserialize(text) or {}
    leaks: list[Leak] = []
    for index, interaction in enumerate(data.get("interactions") or []):
        leaks += _scan_interaction(
            interaction.get("request") or {},
            interaction.get("response") or {},
            path=str(file),
            where=f"interactions[{index}]",
            secrets=secrets,
        )
    leaks += _scan_text(_text(data.get("metadata") or {}), path=str(file), where="metadata", secrets=secrets)
    for secret in secrets:
        if secret in text and not any(leak.kind == "secret" for leak in leaks):
            leaks.append(Leak(str(file), "raw text", "secret", "[a registered secret]"))
    return leaks


def audit_cassettes(root: str | Path, *, secrets: Iterable[str] = ()) -> list[Leak]:
    """:func:`audit_cassette` for every ``*.yaml`` under ``root``."""
    secrets = tuple(secrets)
    leaks: list[Leak] = []
    for file in sorted(Path(root).rglob("*.yaml")):
        leaks += audit_cassette(file, secrets=secrets)
    return leaks


def unplayed(cassette: Any) -> list[str]:
    """``METHOD path`` of every recorded interaction a replay did not use (the connector stopped sending it).

    Args:
        cassette: a vcrpy ``Cassette`` after the test ran.
    """
    return [
        f"{request.method} {request.path}"
        for index, (request, _response) in enumerate(cassette.data)
        if cassette.play_counts[index] == 0
    ]


def leak_guard(scrubber: Scrubber) -> Callable[[Any, Any], tuple[Any, Any]]:
    """A vcrpy ``before_save_interaction`` hook that refuses to save an interaction holding a leak.

    It runs after scrubbing, on exactly what would be written, so a scrubber gap fails the test instead of
    reaching a commit. Nothing of the cassette is written when it raises.

    Args:
        scrubber: the scrubber whose registered secrets must not appear.

    Raises:
        CassetteLeak: from the returned hook.
    """

    def guard(request: Any, response: Any) -> tuple[Any, Any]:
        req = request._to_dict() if hasattr(request, "_to_dict") else dict(request)
        leaks = _scan_interaction(
            req, response, path="<unsaved cassette>", where="interaction", secrets=scrubber.secrets
        )
        if leaks:
            raise CassetteLeak(leaks)
        return request, response

    return guard


def vcr_config(scrubber: Scrubber) -> dict[str, Any]:
    """The ``vcr_config`` of the cassette backend (pytest-recording passes it to ``use_cassette``).

    ``record_mode`` is deliberately absent: it would override ``--record-mode`` (pytest-recording gotcha).
    vcrpy's own ``FilesystemPersister`` is used so cassette metadata (source, tag) is saved and loaded.

    Args:
        scrubber: rewrites requests (recording and matching) and responses (recording and loading).

    Returns:
        Keyword arguments for ``vcr.VCR.use_cassette``.
    """
    from vcr.persisters.filesystem import FilesystemPersister

    return {
        "match_on": MATCH_ON,
        "filter_headers": ["authorization", "proxy-authorization", "cookie"],
        "decode_compressed_response": True,
        "before_record_request": scrubber.scrub_request,
        "before_record_response": scrubber.scrub_response,
        "before_save_interaction": leak_guard(scrubber),
        "persister": FilesystemPersister,
        "allow_playback_repeats": False,
    }
