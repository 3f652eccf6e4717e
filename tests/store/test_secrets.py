"""SecretBox, Secrets and key loading."""

from __future__ import annotations

import base64
import logging
import os
import pickle
import stat
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.errors import ConfigurationError
from connectors.runtime.secrets import (
    SecretBox,
    Secrets,
    generate_secret_key,
    load_old_secret_keys,
    load_secret_key,
    parse_secret_key,
)

KEY = bytes(range(32))
OTHER = bytes(range(1, 33))
ENCODED = base64.urlsafe_b64encode(KEY).decode()


# ------------------------------------------------------------------------------------------ SecretBox


@settings(max_examples=50, deadline=None)
@given(plaintext=st.text(), aad=st.text())
def test_round_trip(plaintext: str, aad: str) -> None:
    box = SecretBox(KEY)
    token = box.encrypt(plaintext, aad=aad)
    assert token.startswith("v1:")
    assert box.decrypt(token, aad=aad) == plaintext


def test_ciphertexts_are_randomised_and_hide_the_plaintext() -> None:
    box = SecretBox(KEY)
    first, second = box.encrypt("sk-live-abc", aad="x"), box.encrypt("sk-live-abc", aad="x")
    assert first != second
    assert "sk-live-abc" not in first
    assert "sk-live-abc" not in base64.urlsafe_b64decode(first[3:]).decode("latin-1")


def test_wrong_key_is_a_configuration_error() -> None:
    token = SecretBox(KEY).encrypt("plain-XYZ", aad="connection:1")
    with pytest.raises(ConfigurationError, match="wrong CONNECTORS_SECRET_KEY") as info:
        SecretBox(OTHER).decrypt(token, aad="connection:1")
    assert "plain-XYZ" not in str(info.value)
    assert token not in str(info.value)
    assert info.value.__cause__ is None
    assert info.value.__context__ is None  # no InvalidTag chained into tracebacks


def test_aad_binds_the_ciphertext_to_its_row() -> None:
    box = SecretBox(KEY)
    token = box.encrypt("refresh-token", aad='["connection","a","secrets"]')
    with pytest.raises(ConfigurationError, match="cannot decrypt"):
        box.decrypt(token, aad='["connection","b","secrets"]')


@pytest.mark.parametrize("position", [3, 10, 30, -1])
def test_tampering_is_detected(position: int) -> None:
    box = SecretBox(KEY)
    token = box.encrypt("payload", aad="a")
    raw = bytearray(base64.urlsafe_b64decode(token[3:]))
    raw[position if position < 0 else position - 3] ^= 0x01
    tampered = "v1:" + base64.urlsafe_b64encode(bytes(raw)).decode()
    with pytest.raises(ConfigurationError, match="cannot decrypt"):
        box.decrypt(tampered, aad="a")


@pytest.mark.parametrize("token", ["", "v2:abcd", "v1:", "v1:!!!!", "v1:" + "A" * 8, "plaintext"])
def test_malformed_tokens(token: str) -> None:
    with pytest.raises(ConfigurationError, match="cannot decrypt"):
        SecretBox(KEY).decrypt(token, aad="a")


def test_key_rotation() -> None:
    old_token = SecretBox(OTHER).encrypt("old", aad="a")
    rotated = SecretBox(KEY, old_keys=[OTHER])
    assert rotated.decrypt(old_token, aad="a") == "old"
    assert rotated.needs_reencryption(old_token, aad="a")
    new_token = rotated.encrypt("new", aad="a")
    assert not rotated.needs_reencryption(new_token, aad="a")
    assert SecretBox(KEY).decrypt(new_token, aad="a") == "new"  # always encrypted with the current key
    with pytest.raises(ConfigurationError):
        SecretBox(KEY).decrypt(old_token, aad="a")


@pytest.mark.parametrize("key", [b"", b"short", bytes(16), bytes(33)])
def test_key_size_is_checked(key: bytes) -> None:
    with pytest.raises(ConfigurationError, match="32 bytes"):
        SecretBox(key)
    with pytest.raises(ConfigurationError, match="old key #1"):
        SecretBox(KEY, old_keys=[key])


def test_box_repr_and_pickle_do_not_leak_the_key() -> None:
    box = SecretBox(KEY, old_keys=[OTHER])
    assert repr(box) == "SecretBox(key='***', old_keys=1)"
    assert ENCODED not in str(box)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(box)


# ------------------------------------------------------------------------------------------ Secrets


def test_secrets_repr_and_str_redact_everything() -> None:
    value = Secrets(
        api_key="ak-123",
        access_token="at-456",
        refresh_token=None,
        token_type="Bearer",
        extra={"client_secret": "cs-789"},
    )
    expected = (
        "Secrets(api_key='***', access_token='***', refresh_token=None, token_type='***', "
        "extra={'client_secret': '***'})"
    )
    assert repr(value) == expected
    assert str(value) == expected
    assert f"{value}" == expected
    assert repr([value]) == f"[{expected}]"
    for secret in ("ak-123", "at-456", "Bearer", "cs-789"):
        assert secret not in repr(value)


def test_secrets_json_round_trip() -> None:
    value = Secrets(api_key="k", access_token="a", refresh_token="r", token_type="Bearer", extra={"x": "y"})
    assert Secrets.from_json(value.to_json()) == value
    assert Secrets.from_json(Secrets().to_json()) == Secrets()


def test_secrets_extra_is_copied() -> None:
    extra = {"webhook": "w1"}
    value = Secrets(extra=extra)
    extra["webhook"] = "changed"
    assert value.extra == {"webhook": "w1"}


@pytest.mark.parametrize(
    "kwargs",
    [{"api_key": 1}, {"access_token": b"bytes"}, {"extra": {"a": 1}}, {"extra": [("a", "b")]}],
)
def test_secrets_types_are_checked(kwargs: dict[str, object]) -> None:
    with pytest.raises(TypeError):
        Secrets(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["not json", "[]", '{"api_key": 5}', '{"extra": {"a": ["sk-x"]}}'])
def test_secrets_from_json_errors_do_not_echo(text: str) -> None:
    with pytest.raises(ConfigurationError, match="malformed") as info:
        Secrets.from_json(text)
    assert "sk-x" not in str(info.value)


# ------------------------------------------------------------------------------------------ key loading


def test_generated_key_format() -> None:
    encoded = generate_secret_key()
    assert len(encoded) == 44
    assert len(parse_secret_key(encoded, source="x")) == 32


def test_key_from_env_wins(tmp_path: Path) -> None:
    key_file = tmp_path / "secret.key"
    key_file.write_text(base64.urlsafe_b64encode(OTHER).decode())
    assert load_secret_key(env={"CONNECTORS_SECRET_KEY": ENCODED}, key_file=key_file, generate=True) == KEY


@pytest.mark.parametrize("encoded", [ENCODED, ENCODED.rstrip("="), f"  {ENCODED}\n"])
def test_key_from_env_accepts_padding_and_whitespace(encoded: str) -> None:
    assert load_secret_key(env={"CONNECTORS_SECRET_KEY": encoded}, key_file=None, generate=False) == KEY


@pytest.mark.parametrize(
    "bad",
    [
        "hunter2-not-a-key",
        base64.urlsafe_b64encode(bytes(16)).decode(),  # too short
        base64.urlsafe_b64encode(bytes(48)).decode(),  # too long
        base64.b64encode(bytes([0xFB] * 32)).decode(),  # standard base64 alphabet (+ and /)
        bytes(range(32)).hex(),  # hex
    ],
)
def test_bad_env_key_message_does_not_echo_it(bad: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        load_secret_key(env={"CONNECTORS_SECRET_KEY": bad}, key_file=None, generate=True)
    message = str(info.value)
    assert bad not in message
    assert "CONNECTORS_SECRET_KEY" in message
    assert "secrets.token_bytes(32)" in message  # tells how to generate one


def test_key_from_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key_file = tmp_path / "secret.key"
    key_file.write_text(ENCODED + "\n")
    key_file.chmod(0o600)
    with caplog.at_level(logging.WARNING):
        assert load_secret_key(env={}, key_file=key_file, generate=False) == KEY
    assert not caplog.records


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_key_file_readable_by_others_is_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key_file = tmp_path / "secret.key"
    key_file.write_text(ENCODED)
    key_file.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="connectors.runtime.secrets"):
        assert load_secret_key(env={}, key_file=key_file) == KEY
    assert "chmod 600" in caplog.text
    assert ENCODED not in caplog.text


def test_bad_key_file(tmp_path: Path) -> None:
    key_file = tmp_path / "secret.key"
    key_file.write_text("garbage-key-material")
    with pytest.raises(ConfigurationError, match=r"secret\.key") as info:
        load_secret_key(env={}, key_file=key_file, generate=True)
    assert "garbage-key-material" not in str(info.value)


def test_generate_key_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key_file = tmp_path / "new" / "dir" / "secret.key"
    with caplog.at_level(logging.WARNING, logger="connectors.runtime.secrets"):
        key = load_secret_key(env={}, key_file=key_file, generate=True)
    assert len(key) == 32
    assert parse_secret_key(key_file.read_text(), source="file") == key
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert str(key_file) in record.getMessage()
    assert "back" in record.getMessage().lower()
    assert "secret" in record.getMessage().lower()
    assert base64.urlsafe_b64encode(key).decode() not in caplog.text
    if os.name == "posix":
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert list(key_file.parent.iterdir()) == [key_file]  # no temporary file left behind
    caplog.clear()
    # The second run reads the same key back, silently.
    assert load_secret_key(env={}, key_file=key_file, generate=True) == key
    assert not caplog.records


def test_concurrent_generation_agrees_on_one_key(tmp_path: Path) -> None:
    key_file = tmp_path / "secret.key"
    keys: list[bytes] = []
    barrier = threading.Barrier(8)

    def run() -> None:
        barrier.wait()
        keys.append(load_secret_key(env={}, key_file=key_file, generate=True))

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(keys) == 8
    assert len(set(keys)) == 1


def test_no_key_and_no_generation(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="CONNECTORS_SECRET_KEY"):
        load_secret_key(env={}, key_file=tmp_path / "missing.key", generate=False)
    with pytest.raises(ConfigurationError, match="CONNECTORS_SECRET_KEY"):
        load_secret_key(env={"CONNECTORS_SECRET_KEY": "  "}, key_file=None, generate=True)
    assert not (tmp_path / "missing.key").exists()


def test_old_keys_from_env() -> None:
    other = base64.urlsafe_b64encode(OTHER).decode()
    assert load_old_secret_keys({}) == []
    assert load_old_secret_keys({"CONNECTORS_OLD_SECRET_KEYS": f"{ENCODED}, {other},"}) == [KEY, OTHER]
    with pytest.raises(ConfigurationError, match="entry #2") as info:
        load_old_secret_keys({"CONNECTORS_OLD_SECRET_KEYS": f"{ENCODED},oops-not-a-key"})
    assert "oops-not-a-key" not in str(info.value)
