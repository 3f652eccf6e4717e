"""The committed cassettes (clean, small, labelled) and the wire contract they pin (changes fail replay)."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import vcr
from vcr.serializers import yamlserializer

from connectors import Connectors, Settings
from connectors.kustomer.connector import KustomerConnector
from connectors.runtime.secrets import SecretBox
from connectors.runtime.store import ConnectionStore
from connectors.testing import (
    TAG_PREFIX,
    CassetteMismatch,
    Scrubber,
    WireLog,
    audit_cassettes,
    unplayed,
    vcr_config,
)
from connectors.testing.kustomer import KUSTOMER_CASES, KustomerContract

pytestmark = [pytest.mark.contract]

ROOT = Path(__file__).resolve().parents[2]
CASSETTES = ROOT / "cassettes"
KUSTOMER = CASSETTES / "kustomer" / "TestKustomerContract"
ORIGIN = KustomerContract.cassette_origin


def _cassettes() -> list[Path]:
    return sorted(CASSETTES.rglob("*.yaml"))


def _seeded_keys() -> list[str]:
    """The API keys the recording sandbox minted: its seed and clock are fixed, so they are minted again here."""
    contract = KustomerContract()
    full = list(contract.full_roles())
    read = list(KustomerConnector.roles_for(["genericContact::list", "genericContact::retrieve"]))
    keys = []
    for order in (["full"], ["restricted", "restricted", "restricted", "full"], ["full", "restricted", "restricted"]):
        sandbox = contract.make_sandbox()
        for purpose in order:
            keys.append(sandbox.mint_api_key(roles=full if purpose == "full" else read, name=f"contract {purpose} key"))
    return keys


def test_cassettes_are_committed_and_say_they_come_from_the_sandbox() -> None:
    files = _cassettes()
    assert files, f"no cassettes under {CASSETTES}; record them: {KustomerContract().rerecord_command(None)}"
    for path in files:
        data = yamlserializer.deserialize(path.read_text(encoding="utf-8"))
        meta = data.get("metadata") or {}
        assert meta.get("source") == "sandbox", f"{path}: source {meta.get('source')!r}"
        assert "sandbox" in meta["recorded_from"] and "not a live Kustomer org" in meta["recorded_from"], path
        assert meta["tag"].startswith(TAG_PREFIX)
        assert data["interactions"], f"{path} is empty"


def test_cassettes_hold_no_token_seeded_secret_or_personal_email() -> None:
    keys = _seeded_keys()
    assert len(set(keys)) > 1 and all(k.startswith("eyJ") for k in keys)
    leaks = audit_cassettes(CASSETTES, secrets=keys)
    assert leaks == [], "\n".join(str(leak) for leak in leaks)


def test_cassettes_stay_small() -> None:
    sizes = {path.name: path.stat().st_size for path in _cassettes()}
    assert sum(sizes.values()) < 600_000, f"cassettes total {sum(sizes.values())} bytes"
    assert max(sizes.values()) < 48_000, max(sizes.items(), key=lambda item: item[1])


def test_every_cassette_belongs_to_a_contract_test() -> None:
    tests = {name for name in dir(KustomerContract) if name.startswith("test_")}
    cases = {case.id.replace(":", "_") for case in KUSTOMER_CASES}
    for path in KUSTOMER.glob("*.yaml"):
        name = path.stem
        test, _, case = name.partition("[")
        assert test in tests, f"{path.name}: no contract test {test!r} (stale cassette?)"
        assert not case or case.rstrip("]") in cases, f"{path.name}: no model case {case!r}"


# -- the wire contract: a recorded cassette refuses what the connector no longer sends the same way -----------


async def _scenario(
    transport: Any, base_url: str, key: str, *, limit: int | None, hint: str = "python -m pytest --record-mode=rewrite"
) -> WireLog:
    wire = WireLog(transport, rerecord_hint=hint)
    store = ConnectionStore("sqlite:///:memory:", secret_box=SecretBox(os.urandom(32)))
    hub = Connectors(settings=Settings(), store=store, transport=wire)
    try:
        conn = await hub.connect("kustomer", "wire-owner", api_key=key, base_url=base_url)
        if limit is not None:
            await conn.resources("genericContact").list(limit=limit)
    finally:
        await hub.aclose()
        store.close()
    return wire


@pytest.fixture
def recorded(tmp_path: Path) -> Callable[[], Awaitable[Path]]:
    async def record() -> Path:
        contract = KustomerContract()
        sandbox = contract.make_sandbox()
        key = sandbox.mint_api_key(roles=list(contract.full_roles()), name="wire key")
        path = tmp_path / "wire.yaml"
        scrubber = Scrubber(origin=ORIGIN, secrets=[key])
        # vcrpy patches httpx.ASGITransport too: the in-process sandbox is recorded without sockets.
        with vcr.VCR(record_mode="all").use_cassette(str(path), **vcr_config(scrubber)):
            await _scenario(sandbox.transport(), sandbox.base_url, key, limit=2)
        return path

    return record


def _replay(path: Path) -> Any:
    return vcr.VCR(record_mode="none").use_cassette(str(path), **vcr_config(Scrubber(origin=ORIGIN)))


@pytest.mark.anyio
async def test_replay_of_an_unchanged_connector_uses_every_recorded_request(recorded: Any) -> None:
    path = await recorded()
    with _replay(path) as cassette:
        wire = await _scenario(None, ORIGIN, "replayed-key", limit=2)
        assert unplayed(cassette) == []
    assert [r.path for r in wire.requests] == ["/v1/auth/tokens/current", "/v1/users/current", "/v1/customers"]
    assert ("pageSize", "2") in wire.requests[-1].query
    assert wire.mismatches == []


@pytest.mark.anyio
async def test_replay_fails_when_the_connector_changes_a_request(recorded: Any) -> None:
    path = await recorded()
    with _replay(path), pytest.raises(CassetteMismatch) as changed:
        await _scenario(None, ORIGIN, "replayed-key", limit=3, hint="python -m pytest tests/contract -k cassette")
    message = str(changed.value)
    assert "wire contract changed" in message and "GET /v1/customers" in message
    assert "query" in message and "pageSize" in message
    assert "python -m pytest tests/contract -k cassette" in message


@pytest.mark.anyio
async def test_replay_notices_a_request_the_connector_stopped_sending(recorded: Any) -> None:
    path = await recorded()
    with _replay(path) as cassette:
        await _scenario(None, ORIGIN, "replayed-key", limit=None)
        assert unplayed(cassette) == ["GET /v1/customers"]
