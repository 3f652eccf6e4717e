"""Scrubbing recorded HTTP interactions: secrets out, personal data replaced by stable fakes.

A :class:`Scrubber` rewrites vcrpy requests (``before_record_request``) and response dicts
(``before_record_response``). vcrpy runs the request side both when recording and when *matching* a live
request against a cassette, and re-runs both sides when it loads a cassette, so every rewrite here is

* **deterministic**: the same input gives the same output (fakes are keyed HMACs of the real value), so a
  request recorded once still matches when the test sends it again;
* **idempotent**: scrubbing a scrubbed value changes nothing (placeholders start with ``scrubbed-``, fake
  emails use reserved example domains, fake phones the fictional ``555-01XX`` range, fake names
  ``Person <hex>``).

What is replaced:

* request headers are dropped except ``Accept`` and ``Content-Type`` (so ``Authorization``, cookies and
  API-key headers never reach a cassette, and neither does a ``Host`` with a random port);
* response headers ``Set-Cookie``, ``Date`` and ``Server`` are dropped; request ids become a counter;
* query and form parameters that carry secrets (``client_secret``, ``code``, ``refresh_token``...) become
  keyed-hash placeholders; values drawn at random on every run (``state``, ``code_challenge``,
  ``code_verifier``, ``nonce``) become one constant placeholder each, so a replayed OAuth flow matches;
* JSON keys that carry secrets (``access_token``, ``refresh_token``, webhook ``token``, ``secret``,
  ``lastTokenChars``...) anywhere in a body, JWTs and ``Bearer`` values anywhere in any text, and every
  value registered with :meth:`Scrubber.add_secret`;
* emails outside the reserved example domains (RFC 2606/6761), phone numbers outside the fictional range,
  and the names of people (customers, users) in records that the test did not create itself. A record is
  the test's own when it contains the run tag prefix (``uc-contract-``): the contract suite writes only such
  records, so what it sends comes back unchanged and round-trip assertions still hold on replay;
* the scheme, host and port of request URIs become one fixed origin, so cassettes recorded from a sandbox on
  a random port, or from a customer's org subdomain, look the same.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
from collections.abc import Iterable
from typing import Any, Final
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

__all__ = [
    "KEPT_REQUEST_HEADERS",
    "PLACEHOLDER_PREFIX",
    "RESERVED_EMAIL_DOMAINS",
    "SANDBOX_SCRUB_KEY",
    "TAG_PREFIX",
    "Scrubber",
    "is_fictional_phone",
    "is_reserved_email",
]

TAG_PREFIX: Final = "uc-contract-"
"""Prefix of the tag the contract suite puts on every record it creates (names, tags, external ids)."""

PLACEHOLDER_PREFIX: Final = "scrubbed-"
"""Prefix of every placeholder that stands in for a secret."""

SANDBOX_SCRUB_KEY: Final = b"unified-connectors/cassettes/sandbox-recordings"
"""Fixed HMAC key for recordings from the sandbox: its data is synthetic, and a fixed key keeps re-recorded
cassettes byte-identical. Recordings from a live org use a random key (or ``CONNECTORS_CASSETTE_SCRUB_KEY``),
so fakes cannot be reversed by hashing guessed emails."""

RESERVED_EMAIL_DOMAINS: Final = ("example.com", "example.net", "example.org", "example", "test", "invalid", "localhost")
"""Domains reserved for documentation and tests (RFC 2606, RFC 6761), subdomains included."""

_EMAIL_RE: Final = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_JWT_RE: Final = re.compile(r"eyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]*")
_BEARER_RE: Final = re.compile(r"(?i)\b(bearer)(\s+)([A-Za-z0-9._~+/=-]{6,})")
_E164_RE: Final = re.compile(r"^\+[1-9][0-9 ().-]{6,20}$")
_FAKE_NAME_RE: Final = re.compile(r"^Person [0-9a-f]{6}$")

KEPT_REQUEST_HEADERS: Final = frozenset({"accept", "content-type"})
"""Request headers kept in cassettes: matching needs ``content-type`` (JSON bodies compare parsed); headers
are not part of the wire contract, and every other one is noise (``host`` with a random port, connection
options) or a credential."""
_DROP_RESPONSE_HEADERS: Final = frozenset({"set-cookie", "date", "server"})
_REQUEST_ID_HEADERS: Final = frozenset({"x-request-id", "x-kustomer-request-id", "x-amzn-requestid"})

# Keys (lower-cased, without '_' and '-') whose string values are secrets wherever they appear in JSON.
_SECRET_JSON_KEYS: Final = frozenset(
    {
        "accesstoken",
        "refreshtoken",
        "idtoken",
        "token",
        "clientsecret",
        "secret",
        "apikey",
        "password",
        "signingsecret",
        "webhooktoken",
        "lasttokenchars",
        "codeverifier",
        "authorization",
    }
)
# Query and form parameters that are secrets. Their placeholders are keyed hashes, so distinct tokens stay
# distinct and a token replayed from a response matches when it is sent back.
_SECRET_PARAMS: Final = frozenset(
    {"accesstoken", "refreshtoken", "idtoken", "token", "clientsecret", "apikey", "password", "code", "clientassertion"}
)
# Parameters the client draws at random on every run (OAuth state, PKCE): one constant placeholder each, so a
# replayed flow still matches what was recorded.
_RANDOM_PARAMS: Final = frozenset({"state", "codechallenge", "codeverifier", "nonce"})
_NAME_KEYS: Final = frozenset({"name", "firstname", "lastname", "displayname", "fullname", "username"})
_PERSON_TYPES: Final = frozenset({"customer", "user"})
_PERSON_COLLECTIONS: Final = ("/customers", "/users")


def _norm_key(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


def is_reserved_email(address: str) -> bool:
    """Whether ``address`` belongs to a domain reserved for examples and tests (subdomains included).

    Args:
        address: an email address.

    Returns:
        True for ``someone@example.com``, ``a@mail.example.org``, ``x@host.test``...
    """
    domain = address.rsplit("@", 1)[-1].lower().rstrip(".")
    return any(domain == d or domain.endswith("." + d) for d in RESERVED_EMAIL_DOMAINS)


def is_fictional_phone(number: str) -> bool:
    """Whether ``number`` is in the North American range reserved for fiction (``+1 NXX 555-0100..0199``).

    Args:
        number: a phone number in any common notation.
    """
    digits = re.sub(r"\D", "", number)
    return len(digits) == 11 and digits[0] == "1" and digits[4:8] == "5550" and digits[8] == "1"


class Scrubber:
    """Deterministic, idempotent scrubbing of recorded requests and responses (see the module docstring).

    Args:
        key: HMAC key of the fakes (:data:`SANDBOX_SCRUB_KEY` for sandbox recordings).
        origin: the ``scheme://host`` every recorded request URI is rewritten to.
        secrets: values that must never be written (API keys minted by the test run, client secrets...).
        tag_prefix: records containing this prefix are the test's own and keep their names.
    """

    def __init__(
        self,
        key: bytes = SANDBOX_SCRUB_KEY,
        *,
        origin: str = "https://api.provider.test",
        secrets: Iterable[str] = (),
        tag_prefix: str = TAG_PREFIX,
    ) -> None:
        self._key = key
        parsed = urlsplit(origin)
        self._origin = (parsed.scheme or "https", parsed.netloc)
        self._secrets: dict[str, str] = {}
        self.tag_prefix = tag_prefix
        self._request_ids: dict[str, str] = {}
        self._counter = itertools.count(1)
        for value in secrets:
            self.add_secret(value)

    def __repr__(self) -> str:
        return f"Scrubber(origin={urlunsplit((*self._origin, '', '', ''))!r}, secrets={len(self._secrets)})"

    # -- fakes ----------------------------------------------------------------------------------------------

    def _digest(self, kind: str, value: str) -> str:
        return hmac.new(self._key, f"{kind}\0{value}".encode(), hashlib.sha256).hexdigest()

    def placeholder(self, kind: str, value: str) -> str:
        """The stable placeholder standing in for the secret ``value`` of kind ``kind``."""
        if value.startswith(PLACEHOLDER_PREFIX):
            return value
        return f"{PLACEHOLDER_PREFIX}{kind}-{self._digest(kind, value)[:12]}"

    def fake_email(self, address: str) -> str:
        """A stable fake for ``address`` on ``example.com`` (reserved addresses are kept)."""
        if is_reserved_email(address):
            return address
        return f"user-{self._digest('email', address.lower())[:10]}@example.com"

    def fake_phone(self, number: str) -> str:
        """A stable fake in the fictional ``+1 NXX 555-01XX`` range (fictional numbers are kept)."""
        if is_fictional_phone(number):
            return number
        digest = int(self._digest("phone", re.sub(r"\D", "", number))[:12], 16)
        area = 200 + digest % 800
        return f"+1{area:03d}55501{(digest // 800) % 100:02d}"

    def fake_name(self, name: str) -> str:
        """A stable fake person name (``Person 3fa2c1``)."""
        if not name or _FAKE_NAME_RE.match(name):
            return name
        return f"Person {self._digest('name', name)[:6]}"

    def add_secret(self, value: str | None) -> None:
        """Never let ``value`` (or any occurrence of it) reach a cassette.

        Args:
            value: a secret the test run knows (an API key it minted, a client secret). Short values (under 8
                characters) are refused to avoid replacing ordinary words.

        Raises:
            ValueError: the value is too short to be replaced safely.
        """
        if not value:
            return
        if len(value) < 8:
            raise ValueError("secrets shorter than 8 characters cannot be scrubbed safely")
        self._secrets.setdefault(value, self.placeholder("secret", value))

    @property
    def secrets(self) -> tuple[str, ...]:
        """The registered secrets (for leak checks); never print them."""
        return tuple(self._secrets)

    # -- text -----------------------------------------------------------------------------------------------

    def scrub_text(self, text: str) -> str:
        """Replace registered secrets, JWTs, bearer values and non-reserved emails in free text."""
        for secret, placeholder in self._secrets.items():
            if secret in text:
                text = text.replace(secret, placeholder)
        text = _JWT_RE.sub(lambda m: self.placeholder("jwt", m.group(0)), text)
        text = _BEARER_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}{self.placeholder('bearer', m.group(3))}", text)
        return _EMAIL_RE.sub(lambda m: self.fake_email(m.group(0)), text)

    def _scrub_param(self, name: str, value: str) -> str:
        key = _norm_key(name)
        if key in _RANDOM_PARAMS and value:
            return f"{PLACEHOLDER_PREFIX}{key}"
        if key in _SECRET_PARAMS and value:
            return self.placeholder(key, value)
        if "phone" in key and value:
            return self.fake_phone(value)
        return self.scrub_text(value)

    def scrub_url(self, url: str) -> str:
        """Rewrite the origin and scrub the path and query of ``url``.

        The path keeps its encoding; emails inside it (lookup paths such as ``/v1/customers/email=...``) are
        replaced whether they are percent-encoded or not.
        """
        parts = urlsplit(url)
        scheme, netloc = self._origin if parts.netloc else (parts.scheme, parts.netloc)
        path = self._scrub_path(parts.path)
        return urlunsplit((scheme, netloc, path, self._scrub_query(parts.query), parts.fragment))

    def _scrub_query(self, query: str) -> str:
        if not query:
            return query
        pairs = parse_qsl(query, keep_blank_values=True)
        scrubbed = [(k, self._scrub_param(k, v)) for k, v in pairs]
        if scrubbed == pairs:
            return query
        return urlencode(scrubbed, quote_via=quote, safe="[]")

    def _scrub_path(self, path: str) -> str:
        segments = []
        for segment in path.split("/"):
            decoded = unquote(segment)
            scrubbed = self.scrub_text(decoded)
            if "=" in decoded and _norm_key(decoded.split("=", 1)[0]) == "phone":
                key, value = decoded.split("=", 1)
                scrubbed = f"{key}={self.fake_phone(value)}"
            segments.append(segment if scrubbed == decoded else quote(scrubbed, safe="@+=,:"))
        return "/".join(segments)

    # -- JSON -----------------------------------------------------------------------------------------------

    def scrub_json(self, value: Any, *, person: bool = False) -> Any:
        """Scrub a decoded JSON document.

        Args:
            value: the document.
            person: the top-level object is a person (a customer or user request body), so its names are
                replaced unless the record is the test's own.
        """
        return self._walk(value, person=person, own=False)

    def _is_own(self, value: Any) -> bool:
        return self.tag_prefix in json.dumps(value, ensure_ascii=False, default=str)

    def _walk(self, value: Any, *, person: bool, own: bool) -> Any:
        if isinstance(value, str):
            return self.scrub_text(value)
        if isinstance(value, list):
            return [self._walk(item, person=person, own=own) for item in value]
        if not isinstance(value, dict):
            return value
        # A JSON:API resource: its type says whether its attributes describe a person.
        resource_type = value.get("type") if isinstance(value.get("type"), str) else None
        if resource_type is not None and isinstance(value.get("attributes"), dict):
            is_person = resource_type in _PERSON_TYPES
            own = self._is_own(value.get("attributes"))
            out = {}
            for key, item in value.items():
                if key == "attributes":
                    out[key] = self._walk(item, person=is_person, own=own)
                else:
                    out[key] = self._walk(item, person=False, own=own)
            return out
        if person and not own:
            own = self._is_own(value)
        result: dict[str, Any] = {}
        for key, item in value.items():
            norm = _norm_key(key)
            if isinstance(item, str) and item and norm in _SECRET_JSON_KEYS:
                result[key] = self.placeholder(norm, item)
            elif isinstance(item, str) and person and not own and norm in _NAME_KEYS:
                result[key] = self.fake_name(item)
            elif isinstance(item, str) and "phone" in norm:
                result[key] = self.fake_phone(item) if _looks_like_phone(item) else self.scrub_text(item)
            elif isinstance(item, dict | list):
                nested_person = person and norm not in ("custom", "relationships", "meta", "links")
                result[key] = self._walk(item, person=nested_person, own=own)
            else:
                result[key] = self._walk(item, person=person, own=own)
        return result

    def _scrub_body(self, body: bytes, content_type: str, *, person: bool) -> bytes:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return body
        stripped = text.lstrip()
        if "json" in content_type or stripped.startswith(("{", "[")):
            try:
                document = json.loads(text)
            except ValueError:
                return self.scrub_text(text).encode("utf-8")
            scrubbed = self.scrub_json(document, person=person)
            if scrubbed == document:
                return body
            return json.dumps(scrubbed, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        if "x-www-form-urlencoded" in content_type:
            scrubbed_query = self._scrub_query(text)
            return body if scrubbed_query == text else scrubbed_query.encode("ascii")
        return self.scrub_text(text).encode("utf-8")

    # -- vcrpy hooks ------------------------------------------------------------------------------------------

    def scrub_request(self, request: Any) -> Any:
        """``before_record_request``: scrub a vcrpy request in place and return it (vcrpy passes a copy)."""
        headers = request.headers
        for name in list(headers.keys()):
            if name.lower() not in KEPT_REQUEST_HEADERS:
                del headers[name]
            else:
                headers[name] = self.scrub_text(str(headers[name]))
        request.uri = self.scrub_url(request.uri)
        body = request.body
        if isinstance(body, str):
            body = body.encode("utf-8")
        if isinstance(body, bytes) and body:
            content_type = str(headers.get("content-type", "") or "").lower()
            path = urlsplit(request.uri).path
            person = any(segment in path for segment in _PERSON_COLLECTIONS)
            request.body = self._scrub_body(body, content_type, person=person)
        return request

    def scrub_response(self, response: dict[str, Any]) -> dict[str, Any]:
        """``before_record_response``: scrub a vcrpy response dict (vcrpy passes a deep copy) and return it."""
        headers: dict[str, list[str]] = {}
        for name, values in (response.get("headers") or {}).items():
            lower = name.lower()
            if lower in _DROP_RESPONSE_HEADERS:
                continue
            items = values if isinstance(values, list) else [values]
            if lower in _REQUEST_ID_HEADERS:
                headers[name] = [self._request_id(str(v)) for v in items]
            elif lower == "location":
                headers[name] = [
                    self.scrub_url(str(v)) if "://" in str(v) else self._scrub_location(str(v)) for v in items
                ]
            else:
                headers[name] = [self.scrub_text(str(v)) for v in items]
        body = response.get("body") or {}
        raw = body.get("string")
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        if isinstance(raw, bytes) and raw:
            content_type = ""
            for name, values in headers.items():
                if name.lower() == "content-type" and values:
                    content_type = str(values[0]).lower()
            scrubbed = self._scrub_body(raw, content_type, person=False)
            if scrubbed != raw:
                body = {**body, "string": scrubbed}
                for name in headers:
                    if name.lower() == "content-length":
                        headers[name] = [str(len(scrubbed))]
        return {**response, "headers": headers, "body": body}

    def _scrub_location(self, location: str) -> str:
        parts = urlsplit(location)
        return urlunsplit(("", "", self._scrub_path(parts.path), self._scrub_query(parts.query), parts.fragment))

    def _request_id(self, value: str) -> str:
        if value.startswith("req-"):
            return value
        known = self._request_ids.get(value)
        if known is None:
            known = self._request_ids[value] = f"req-{next(self._counter):04d}"
        return known


def _looks_like_phone(value: str) -> bool:
    return bool(_E164_RE.match(value.strip())) or sum(ch.isdigit() for ch in value) >= 7
