"""The scrubber, the leak audit and the save guard: secrets out, personal data faked, deterministically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import vcr
from vcr.request import Request

from connectors.testing import (
    CassetteLeak,
    Scrubber,
    audit_cassette,
    is_fictional_phone,
    is_reserved_email,
    leak_guard,
    vcr_config,
)

pytestmark = pytest.mark.contract

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyLTEyMyJ9.c2lnbmF0dXJlLWJ5dGVz"


def request(method: str, uri: str, body: Any = None, **headers: str) -> Request:
    raw = json.dumps(body).encode() if isinstance(body, dict | list) else body
    return Request(method, uri, raw, {"content-type": "application/json", **headers})


def response(body: Any, *, status: int = 200, **headers: str) -> dict[str, Any]:
    raw = json.dumps(body).encode() if isinstance(body, dict | list) else body
    all_headers = {"content-type": ["application/json"], "content-length": [str(len(raw))]}
    all_headers.update({k.replace("_", "-"): [v] for k, v in headers.items()})
    return {"status": {"code": status, "message": "OK"}, "headers": all_headers, "body": {"string": raw}}


def body_of(resp: dict[str, Any]) -> Any:
    return json.loads(resp["body"]["string"])


def test_reserved_domains_and_fictional_numbers() -> None:
    for address in ("a@example.com", "b@mail.example.org", "c@example.net", "d@host.test", "e@x.invalid"):
        assert is_reserved_email(address), address
    for address in ("a@gmail.com", "b@example.co", "c@notexample.com", "d@examplecom.io"):
        assert not is_reserved_email(address), address
    assert is_fictional_phone("+1 202 555 0143") and is_fictional_phone("+12025550199")
    assert not is_fictional_phone("+14155552671") and not is_fictional_phone("+15551000000")


def test_fakes_are_stable_distinct_reserved_and_idempotent() -> None:
    one, other = Scrubber(b"k1"), Scrubber(b"k1")
    email = one.fake_email("Jane.Doe@gmail.com")
    assert email == other.fake_email("jane.doe@gmail.com")  # deterministic (and case-insensitive)
    assert is_reserved_email(email) and one.fake_email(email) == email
    assert one.fake_email("someone.else@gmail.com") != email
    assert Scrubber(b"k2").fake_email("jane.doe@gmail.com") != email  # keyed: not a plain hash of the email
    phone = one.fake_phone("+1 (415) 555-2671")
    assert is_fictional_phone(phone) and one.fake_phone(phone) == phone and phone == other.fake_phone("+14155552671")
    name = one.fake_name("Jane Doe")
    assert name.startswith("Person ") and one.fake_name(name) == name
    placeholder = one.placeholder("token", "abc123secret")
    assert placeholder.startswith("scrubbed-token-") and one.placeholder("token", placeholder) == placeholder


def test_requests_lose_credentials_and_host_but_keep_what_is_matched() -> None:
    scrubber = Scrubber(origin="https://api.kustomer.test")
    req = request(
        "GET",
        "http://127.0.0.1:43211/v1/customers?page=2&pageSize=5&api_key=k-123456789",
        authorization=f"Bearer {TOKEN}",
        cookie="session=abcdefgh",
        host="127.0.0.1:43211",
        user_agent="unified-connectors/0.1.0",
    )
    out = scrubber.scrub_request(req)
    assert out.uri.startswith("https://api.kustomer.test/v1/customers?")
    assert ("page", "2") in out.query and ("pageSize", "5") in out.query
    assert dict(out.query)["api_key"].startswith("scrubbed-apikey-")
    assert set(out.headers) == {"content-type"}
    assert scrubber.scrub_request(out).uri == out.uri  # idempotent


def test_lookup_paths_and_bodies_with_personal_data_are_faked_the_same_way_every_time() -> None:
    scrubber = Scrubber(b"fixed")
    plain = scrubber.scrub_request(request("GET", "https://x.test/v1/customers/email=jane.doe@gmail.com"))
    encoded = scrubber.scrub_request(request("GET", "https://x.test/v1/customers/email=jane.doe%40gmail.com"))
    fake = scrubber.fake_email("jane.doe@gmail.com")
    assert plain.path.endswith(fake) and encoded.path.endswith(fake)
    phone = scrubber.scrub_request(request("GET", "https://x.test/v1/customers/phone=%2B14155552671"))
    assert phone.path.endswith(scrubber.fake_phone("+14155552671").replace("+", "+"))
    kept = scrubber.scrub_request(request("GET", "https://x.test/v1/customers/email=ada@example.com"))
    assert kept.path.endswith("ada@example.com")
    body = {"name": "Jane Doe", "emails": [{"email": "jane.doe@gmail.com"}], "phones": [{"phone": "+14155552671"}]}
    out = json.loads(scrubber.scrub_request(request("POST", "https://x.test/v1/customers", body)).body)
    assert out == {
        "name": scrubber.fake_name("Jane Doe"),
        "emails": [{"email": fake}],
        "phones": [{"phone": scrubber.fake_phone("+14155552671")}],
    }
    again = json.loads(scrubber.scrub_request(request("POST", "https://x.test/v1/customers", out)).body)
    assert again == out  # replaying a scrubbed body matches the recording


def test_records_the_test_wrote_keep_their_names_others_are_faked() -> None:
    scrubber = Scrubber(b"fixed")
    resp = response(
        {
            "data": [
                {
                    "type": "customer",
                    "id": "1",
                    "attributes": {"name": "Ada uc-contract-1234abcd", "displayName": "Ada"},
                },
                {"type": "customer", "id": "2", "attributes": {"name": "Jane Doe", "firstName": "Jane"}},
                {"type": "company", "id": "3", "attributes": {"name": "Acme Inc"}},
                {"type": "user", "id": "4", "attributes": {"displayName": "Sam Agent", "custom": {"teamName": "x"}}},
            ]
        }
    )
    data = body_of(scrubber.scrub_response(resp))["data"]
    assert data[0]["attributes"] == {"name": "Ada uc-contract-1234abcd", "displayName": "Ada"}
    assert data[1]["attributes"]["name"] == scrubber.fake_name("Jane Doe")
    assert data[1]["attributes"]["firstName"] == scrubber.fake_name("Jane")
    assert data[2]["attributes"]["name"] == "Acme Inc"  # companies are not people
    assert data[3]["attributes"]["displayName"].startswith("Person ")


def test_tokens_in_bodies_headers_and_text_are_replaced() -> None:
    scrubber = Scrubber(b"fixed")
    scrubber.add_secret("client-secret-0123456789")
    oauth = response(
        {"access_token": TOKEN, "refresh_token": "r-0123456789abcdef", "token_type": "Bearer", "expires_in": 86400},
        set_cookie="sid=abcdef0123",
        date="Mon, 01 Mar 2026 00:00:00 GMT",
        x_request_id="0f0e0d0c0b0a",
    )
    out = scrubber.scrub_response(oauth)
    token = body_of(out)
    assert token["access_token"].startswith("scrubbed-accesstoken-")
    assert token["refresh_token"].startswith("scrubbed-refreshtoken-")
    assert token["token_type"] == "Bearer" and token["expires_in"] == 86400
    assert "set-cookie" not in out["headers"] and "date" not in out["headers"]
    assert out["headers"]["x-request-id"] == ["req-0001"]
    assert out["headers"]["content-length"] == [str(len(out["body"]["string"]))]
    webhook = response(
        {"data": {"type": "outbound_webhook", "attributes": {"url": "https://h.example.com", "token": "f" * 64}}}
    )
    assert body_of(scrubber.scrub_response(webhook))["data"]["attributes"]["token"].startswith("scrubbed-token-")
    text = response(f"<p>Authorization: Bearer {TOKEN}; key client-secret-0123456789; mail a.b@corp.io</p>".encode())
    html = scrubber.scrub_response({**text, "headers": {"content-type": ["text/html"]}})["body"]["string"].decode()
    assert TOKEN not in html and "client-secret-0123456789" not in html and "a.b@corp.io" not in html
    assert "@example.com" in html


def test_oauth_form_bodies_and_redirects() -> None:
    scrubber = Scrubber(b"fixed")
    form = b"grant_type=authorization_code&code=c0de-123456&code_verifier=v3rifier-abcdef&client_secret=s3cr3t-xyz"
    req = Request("POST", "https://x.test/oauth/token", form, {"content-type": "application/x-www-form-urlencoded"})
    out = dict(pair.split("=", 1) for pair in scrubber.scrub_request(req).body.decode().split("&"))
    assert out["grant_type"] == "authorization_code"
    assert out["code"].startswith("scrubbed-code-") and out["client_secret"].startswith("scrubbed-clientsecret-")
    assert out["code_verifier"] == "scrubbed-codeverifier"  # random per run: one constant, so replays match
    redirect = response(b"", status=302, location="https://app.example.com/cb?code=c0de-123456&state=st4te-abcdef")
    location = scrubber.scrub_response(redirect)["headers"]["location"][0]
    assert "c0de-123456" not in location and "st4te-abcdef" not in location
    assert f"code={scrubber.placeholder('code', 'c0de-123456')}" in location
    assert "state=scrubbed-state" in location


def test_short_secrets_are_refused() -> None:
    with pytest.raises(ValueError, match="shorter than 8"):
        Scrubber(secrets=["abc"])
    assert "secrets=1" in repr(Scrubber(secrets=["long-enough-secret"]))


def _write_cassette(path: Path, interaction: dict[str, Any]) -> None:
    from vcr.serializers import yamlserializer

    path.write_text(yamlserializer.serialize({"version": 1, "interactions": [interaction]}), encoding="utf-8")


@pytest.mark.parametrize(
    ("where", "value", "kind"),
    [
        ("request.headers", {"authorization": ["Bearer abcdef123456"]}, "credential-header"),
        ("response.body", '{"note": "Bearer abcdef1234567"}', "bearer"),
        ("response.body", json.dumps({"t": TOKEN}), "jwt"),
        ("response.body", '{"email": "jane.doe@gmail.com"}', "email"),
        ("request.uri", "https://x.test/v1/customers/email=jane@corp.io", "email"),
        ("response.body", '{"phone": "+14155552671"}', "phone"),
        ("response.body", '{"x": "seeded-secret-value-42"}', "secret"),
    ],
)
def test_audit_finds_every_kind_of_leak(tmp_path: Path, where: str, value: Any, kind: str) -> None:
    interaction: dict[str, Any] = {
        "request": {"method": "GET", "uri": "https://x.test/v1/x", "body": None, "headers": {}},
        "response": {"status": {"code": 200, "message": "OK"}, "headers": {}, "body": {"string": "{}"}},
    }
    part, field = where.split(".")
    if field == "body":
        interaction[part]["body"] = {"string": value}
    else:
        interaction[part][field] = value
    path = tmp_path / "leaky.yaml"
    _write_cassette(path, interaction)
    leaks = audit_cassette(path, secrets=["seeded-secret-value-42"])
    kinds = {leak.kind for leak in leaks}
    assert kind in kinds and kinds <= {kind, "bearer"}, leaks
    assert "seeded-secret-value-42" not in str(leaks) and "abcdef123456" not in str(leaks)


def test_audit_passes_a_clean_cassette(tmp_path: Path) -> None:
    path = tmp_path / "clean.yaml"
    _write_cassette(
        path,
        {
            "request": {
                "method": "GET",
                "uri": "https://x.test/v1/customers/email=ada@example.com",
                "body": None,
                "headers": {},
            },
            "response": {
                "status": {"code": 200, "message": "OK"},
                "headers": {"content-type": ["application/json"]},
                "body": {
                    "string": '{"email": "ada@example.com", "phone": "+12025550143", "token": "scrubbed-token-1"}'
                },
            },
        },
    )
    assert audit_cassette(path) == []


def test_the_save_guard_refuses_to_write_a_leaky_cassette(tmp_path: Path) -> None:
    scrubber = Scrubber(secrets=["planted-secret-0001"])
    config = vcr_config(scrubber)
    # A broken scrubber (identity): the guard is the last line of defence.
    config.update(before_record_request=lambda r: r, before_record_response=lambda r: r)
    assert config["before_save_interaction"] is not None
    cassette_path = tmp_path / "never.yaml"
    recorder = vcr.VCR(record_mode="all")
    with pytest.raises(CassetteLeak, match="leak"), recorder.use_cassette(str(cassette_path), **config) as cassette:
        cassette.append(
            Request("GET", "https://x.test/v1/x", None, {}),
            response({"echo": "planted-secret-0001"}),
        )
    assert not cassette_path.exists()
    assert leak_guard(Scrubber())(Request("GET", "https://x.test/", None, {}), response({"ok": 1}))
