"""Recording from the sandbox over real HTTP scrubs every secret the run seeds, and the result still replays.

The flow touches everything a cassette must never hold: an OAuth consent, code exchange and refresh (codes,
access and refresh tokens, the client secret, PKCE and state), an outbound webhook (its HMAC ``token`` in the
response body), and a customer with real-looking personal data (name, email, phone in bodies and in a lookup
path). The cassette is recorded into a temporary directory, audited for the exact values the run saw, then
replayed with no sandbox at all.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import pytest
import vcr
from vcr.serializers import yamlserializer

from connectors import Connectors, Settings
from connectors.kustomer.sandbox import running_sandbox
from connectors.runtime.secrets import SecretBox
from connectors.runtime.store import ConnectionStore
from connectors.testing import Scrubber, WireLog, audit_cassette, is_reserved_email, unplayed, vcr_config
from connectors.testing.kustomer import SANDBOX_CLOCK, KustomerContract

pytestmark = [pytest.mark.contract, pytest.mark.anyio]

ORIGIN = KustomerContract.cassette_origin
CLIENT_ID = "contract-oauth-client"
CLIENT_SECRET = "contract-client-secret-7b1d4c"
REDIRECT_URI = "https://app.example.com/oauth/callback"
OPERATIONS = ("genericContact::create", "genericContact::list", "webhooks::subscribe")
PERSON = {"firstName": "Jane", "lastName": "Realperson", "email": "jane.realperson@gmail.com", "phone": "+14155552671"}


@dataclass
class Clock:
    now: float = SANDBOX_CLOCK

    def __call__(self) -> float:
        return self.now


@dataclass
class Seen:
    """Every secret value the flow handled (in replay: the placeholders that stood in for them)."""

    values: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, value: str | None) -> None:
        if value:
            self.values[name] = value


async def _consent(url: str) -> dict[str, str]:
    """Play the user on the consent page (its own HTTP client: vcrpy records and replays it too)."""
    async with httpx.AsyncClient(follow_redirects=False) as browser:
        page = await browser.get(url)
        assert page.status_code == 200, page.text
        request_id = re.search(r'name="request_id" value="([^"]+)"', page.text)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert request_id and csrf
        parts = urlsplit(url)
        decision = await browser.post(
            f"{parts.scheme}://{parts.netloc}{parts.path}",
            data={"request_id": request_id.group(1), "csrf_token": csrf.group(1), "decision": "approve"},
        )
    assert decision.status_code == 302, decision.text
    return {k: v[0] for k, v in parse_qs(urlsplit(decision.headers["location"]).query).items()}


async def _flow(base_url: str) -> tuple[Seen, Any, WireLog]:
    clock = Clock()
    seen = Seen()
    wire = WireLog()
    store = ConnectionStore("sqlite:///:memory:", secret_box=SecretBox(os.urandom(32)))
    settings = Settings(kustomer={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})
    hub = Connectors(settings=settings, store=store, transport=wire, clock=clock)
    try:
        request = await hub.authorize(
            "kustomer", "oauth-owner", operations=OPERATIONS, redirect_uri=REDIRECT_URI, base_url=base_url
        )
        assert request.url is not None and request.state is not None
        callback = await _consent(request.url)
        seen.add("code", callback.get("code"))
        conn = await hub.complete_authorization(code=callback.get("code"), state=request.state)
        first = conn.session.record.secrets
        seen.add("access_token", first.access_token)
        seen.add("refresh_token", first.refresh_token)
        clock.now += 86_400  # the access token expired: the next call refreshes it first
        hook = await conn.proxy(
            "POST",
            "/v1/outbound-webhooks",
            json={
                "name": "contract hook",
                "url": "https://hooks.example.com/kustomer",
                "events": ["kustomer.conversation.create"],
            },
        )
        assert hook.status_code in (200, 201), hook.text
        seen.add("webhook_token", hook.json()["data"]["attributes"]["token"])
        refreshed = (await hub.get("kustomer", "oauth-owner")).session.record.secrets
        assert refreshed.access_token != first.access_token
        seen.add("access_token_2", refreshed.access_token)
        seen.add("refresh_token_2", refreshed.refresh_token)
        contacts = conn.resources("genericContact")
        created = await contacts.create(PERSON)
        found = await contacts.list(filters={"email": PERSON["email"]})
        assert [c.id for c in found.data] == [created.id]
        return seen, created, wire
    finally:
        await hub.aclose()
        store.close()


@pytest.fixture
def cassette_path(tmp_path: Path) -> Path:
    return tmp_path / "oauth_webhook_pii.yaml"


@pytest.mark.http
@pytest.mark.block_network(allowed_hosts=["127\\.0\\.0\\.1"])
async def test_recording_scrubs_what_the_run_seeded_and_replays_without_a_sandbox(cassette_path: Path) -> None:
    contract = KustomerContract()
    sandbox = contract.make_sandbox()
    sandbox.register_oauth_client(CLIENT_ID, CLIENT_SECRET, [REDIRECT_URI])
    scrubber = Scrubber(origin=ORIGIN, secrets=[CLIENT_SECRET])
    recorder = vcr.VCR(record_mode="all").use_cassette(str(cassette_path), **vcr_config(scrubber))
    with running_sandbox(sandbox=sandbox) as (_, base_url), recorder:
        seen, created, _wire = await _flow(base_url)
    assert created.email == PERSON["email"]  # the live run saw the real values
    assert set(seen.values) == {
        "code",
        "access_token",
        "refresh_token",
        "webhook_token",
        "access_token_2",
        "refresh_token_2",
    }

    # Nothing the run seeded or saw reaches the file; personal data is faked.
    leaks = audit_cassette(cassette_path, secrets=[CLIENT_SECRET, *seen.values.values()])
    assert leaks == [], "\n".join(map(str, leaks))
    text = await anyio.Path(cassette_path).read_text(encoding="utf-8")
    for value in (*PERSON.values(), "jane.realperson%40gmail.com"):
        assert value not in text, value
    data = yamlserializer.deserialize(text)
    uris = [i["request"]["uri"] for i in data["interactions"]]
    assert all(uri.startswith(ORIGIN) for uri in uris), uris
    assert any("/oauth/token" in uri for uri in uris) and any("/outbound-webhooks" in uri for uri in uris)
    fake_email = scrubber.fake_email(PERSON["email"])
    assert any(uri.endswith(f"/v1/customers/email={fake_email}") for uri in uris)

    # Replay: no sandbox, every request matches (random state and PKCE included), every interaction is used.
    with vcr.VCR(record_mode="none").use_cassette(
        str(cassette_path), **vcr_config(Scrubber(origin=ORIGIN))
    ) as cassette:
        replayed, replayed_contact, wire = await _flow(ORIGIN)
        assert unplayed(cassette) == []
    assert wire.mismatches == []
    assert all(v.startswith("scrubbed-") for k, v in replayed.values.items()), replayed.values
    assert replayed_contact.email is not None and is_reserved_email(replayed_contact.email)
    assert replayed_contact.first_name != "Jane" and replayed_contact.phone != PERSON["phone"]
