"""Secrets at rest: AES-256-GCM encryption, key loading and a redacting container for credentials.

A connection's credentials (API key, OAuth tokens, per-tenant client secrets, webhook signing tokens) live in
a :class:`Secrets` value whose ``repr``/``str`` never show them. The store serialises it with
:meth:`Secrets.to_json` and encrypts the JSON with a :class:`SecretBox` before it reaches the database.

Every ciphertext is bound to where it is stored through the AES-GCM *associated data* (``aad``: e.g. the
connection id and the column), so a ciphertext copied to another row does not decrypt.

The key comes from ``CONNECTORS_SECRET_KEY``: a urlsafe-base64 encoded 32-byte key. Generate one with::

    python -c "import secrets,base64;print(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())"

Without it, :func:`load_secret_key` reads a key file, and the embedded default generates that file on first
run (with a warning: back it up, whoever reads it can decrypt every stored credential).

Key rotation: set the new key as ``CONNECTORS_SECRET_KEY`` and the previous ones, comma separated, as
``CONNECTORS_OLD_SECRET_KEYS``. Old ciphertexts still decrypt; everything written from then on uses the new
key, and :meth:`connectors.runtime.store.ConnectionStore.reencrypt_all` rewrites the rest.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import secrets as _secrets
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from connectors.errors import ConfigurationError

__all__ = [
    "KEY_ENV_VAR",
    "OLD_KEYS_ENV_VAR",
    "SecretBox",
    "Secrets",
    "generate_secret_key",
    "load_old_secret_keys",
    "load_secret_key",
    "parse_secret_key",
]

logger = logging.getLogger(__name__)

KEY_ENV_VAR: Final = "CONNECTORS_SECRET_KEY"
"""Environment variable holding the current key (urlsafe base64 of 32 random bytes)."""

OLD_KEYS_ENV_VAR: Final = "CONNECTORS_OLD_SECRET_KEYS"
"""Environment variable holding previous keys, comma separated, still accepted for decryption."""

KEY_SIZE: Final = 32
_NONCE_SIZE: Final = 12
_CIPHERTEXT_PREFIX: Final = "v1:"
_KEY_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{43}=?")
_GENERATE_HINT: Final = (
    'generate one with: python -c "import secrets,base64;'
    'print(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())"'
)
_REDACTED: Final = "'***'"


def generate_secret_key() -> str:
    """Return a new random key, encoded as ``CONNECTORS_SECRET_KEY`` expects it.

    Returns:
        The urlsafe-base64 text of 32 random bytes (44 characters).
    """
    return base64.urlsafe_b64encode(_secrets.token_bytes(KEY_SIZE)).decode("ascii")


def parse_secret_key(text: str, *, source: str) -> bytes:
    """Decode a urlsafe-base64 32-byte key.

    Args:
        text: the encoded key; surrounding whitespace is ignored, the ``=`` padding is optional.
        source: where it came from (an environment variable or a file), for the error message.

    Returns:
        The 32 raw key bytes.

    Raises:
        ConfigurationError: ``text`` is not such a key. The message never contains the value.
    """
    candidate = text.strip()
    if _KEY_PATTERN.fullmatch(candidate):
        with contextlib.suppress(binascii.Error, ValueError):
            raw = base64.urlsafe_b64decode(candidate.rstrip("=") + "=")
            if len(raw) == KEY_SIZE:
                return raw
    raise ConfigurationError(f"{source} is not a urlsafe-base64 encoded 32-byte key; {_GENERATE_HINT}")


def load_old_secret_keys(env: Mapping[str, str] = os.environ) -> list[bytes]:
    """Return the previous keys listed in ``CONNECTORS_OLD_SECRET_KEYS`` (comma separated), for rotation.

    Args:
        env: the environment to read.

    Returns:
        The decoded keys, in the order given (empty when the variable is unset or blank).

    Raises:
        ConfigurationError: one of the entries is not a valid key (the message gives its position only).
    """
    raw = env.get(OLD_KEYS_ENV_VAR, "")
    parts = [part for part in (p.strip() for p in raw.split(",")) if part]
    return [parse_secret_key(part, source=f"{OLD_KEYS_ENV_VAR} entry #{i}") for i, part in enumerate(parts, 1)]


def load_secret_key(
    *,
    env: Mapping[str, str] = os.environ,
    key_file: Path | None = None,
    generate: bool = False,
) -> bytes:
    """Find the key that encrypts secrets at rest.

    In order: ``CONNECTORS_SECRET_KEY`` (urlsafe-base64 of 32 bytes); else ``key_file`` if it exists; else,
    when ``generate`` is true, a new key written to ``key_file`` (mode 0600, parent directories created)
    with a WARNING saying where it is and that it must be backed up and kept secret. Several processes
    starting at once agree on one key: the file is published atomically and a loser reads the winner's key.

    Args:
        env: the environment to read.
        key_file: where the key file is (or is to be generated).
        generate: create the key file when there is neither a variable nor a file (the embedded default).

    Returns:
        The 32 raw key bytes.

    Raises:
        ConfigurationError: the variable or file holds something that is not a key, or no key is configured
            and ``generate`` is false. Messages never echo key material.
    """
    value = env.get(KEY_ENV_VAR, "")
    if value.strip():
        return parse_secret_key(value, source=KEY_ENV_VAR)
    if key_file is not None:
        existing = _read_key_file(key_file)
        if existing is not None:
            return existing
        if generate:
            return _generate_key_file(key_file)
    where = f" and no key file at {key_file}" if key_file is not None else ""
    raise ConfigurationError(f"no secret key configured: set {KEY_ENV_VAR}{where}; {_GENERATE_HINT}")


def _read_key_file(path: Path) -> bytes | None:
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read the secret key file {path}: {type(exc).__name__}") from None
    if os.name == "posix":
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            logger.warning(
                "secret key file %s is accessible by other users (mode %o); restrict it with chmod 600",
                path,
                mode,
            )
    return parse_secret_key(text, source=f"secret key file {path}")


def _generate_key_file(path: Path) -> bytes:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = generate_secret_key()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{_secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(key + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # atomic, and fails if another process published a key first
        except FileExistsError:
            existing = _read_key_file(path)
            if existing is None:  # pragma: no cover - deleted between link and read
                raise ConfigurationError(f"secret key file {path} vanished while being created") from None
            return existing
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    logger.warning(
        "generated a new secret key in %s (no %s set). Back this file up and keep it secret: without it the "
        "stored credentials cannot be decrypted, and anyone who reads it can decrypt them.",
        path,
        KEY_ENV_VAR,
    )
    return parse_secret_key(key, source=f"secret key file {path}")


class SecretBox:
    """AES-256-GCM encryption of short text values, bound to where they are stored.

    Tokens look like ``v1:<urlsafe-b64(nonce || ciphertext+tag)>`` with a fresh 96-bit random nonce each
    time. Encryption always uses ``key``; decryption also tries ``old_keys`` (key rotation).

    Args:
        key: the current 32-byte key.
        old_keys: previous keys still accepted for decryption.

    Raises:
        ConfigurationError: a key is not 32 bytes long.
    """

    __slots__ = ("_ciphers", "_kdf")

    def __init__(self, key: bytes, *, old_keys: Sequence[bytes] = ()) -> None:
        ciphers: list[AESGCM] = []
        for i, candidate in enumerate((key, *old_keys)):
            if not isinstance(candidate, bytes) or len(candidate) != KEY_SIZE:
                what = "key" if i == 0 else f"old key #{i}"
                raise ConfigurationError(f"SecretBox {what} must be {KEY_SIZE} bytes (AES-256)")
            ciphers.append(AESGCM(candidate))
        self._ciphers: tuple[AESGCM, ...] = tuple(ciphers)
        self._kdf = hmac.new(key, b"unified-connectors:kdf", hashlib.sha256).digest()

    def __repr__(self) -> str:
        return f"SecretBox(key='***', old_keys={len(self._ciphers) - 1})"

    def derive_key(self, purpose: str) -> bytes:
        """A 32-byte key for ``purpose`` (e.g. ``"cursor"``), derived from the current key (HMAC-SHA256).

        Every process with the same deployment key derives the same bytes; the deployment key itself is
        never exposed.
        """
        return hmac.new(self._kdf, purpose.encode("utf-8"), hashlib.sha256).digest()

    def __reduce__(self) -> Any:
        raise TypeError("SecretBox cannot be pickled (it would copy the key); pass the key explicitly")

    def encrypt(self, plaintext: str, *, aad: str) -> str:
        """Encrypt ``plaintext`` with the current key.

        Args:
            plaintext: the value to protect.
            aad: associated data naming where the value is stored (e.g. ``connection:<id>:secrets``); the
                same string must be given to :meth:`decrypt`.

        Returns:
            A ``v1:`` text token, safe to store and to log.
        """
        nonce = _secrets.token_bytes(_NONCE_SIZE)
        sealed = self._ciphers[0].encrypt(nonce, plaintext.encode("utf-8"), aad.encode("utf-8"))
        return _CIPHERTEXT_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def decrypt(self, token: str, *, aad: str) -> str:
        """Decrypt a token made by :meth:`encrypt` (with the current or an old key).

        Args:
            token: the ``v1:`` token.
            aad: the associated data it was encrypted with.

        Returns:
            The plaintext.

        Raises:
            ConfigurationError: the token is malformed, was encrypted with another key, was tampered with,
                or belongs to another row/column (``aad`` mismatch).
        """
        blob = self._unpack(token, aad=aad)
        nonce, sealed = blob[:_NONCE_SIZE], blob[_NONCE_SIZE:]
        for cipher in self._ciphers:
            try:
                plain = cipher.decrypt(nonce, sealed, aad.encode("utf-8"))
            except InvalidTag:
                continue
            return plain.decode("utf-8")
        raise ConfigurationError(
            f"cannot decrypt the stored secret ({aad}): wrong {KEY_ENV_VAR}? (or the data was tampered with "
            "or copied from another row)"
        )

    def needs_reencryption(self, token: str, *, aad: str) -> bool:
        """Tell whether ``token`` was encrypted with an old key (so rotation should rewrite it).

        Args:
            token: the ``v1:`` token.
            aad: the associated data it was encrypted with.

        Returns:
            ``False`` if the current key decrypts it, ``True`` otherwise.

        Raises:
            ConfigurationError: the token is malformed.
        """
        blob = self._unpack(token, aad=aad)
        try:
            self._ciphers[0].decrypt(blob[:_NONCE_SIZE], blob[_NONCE_SIZE:], aad.encode("utf-8"))
        except InvalidTag:
            return True
        return False

    @staticmethod
    def _unpack(token: str, *, aad: str) -> bytes:
        if not isinstance(token, str) or not token.startswith(_CIPHERTEXT_PREFIX):
            raise ConfigurationError(f"cannot decrypt the stored secret ({aad}): unknown ciphertext format")
        try:
            blob = base64.urlsafe_b64decode(token[len(_CIPHERTEXT_PREFIX) :].encode("ascii"))
        except (binascii.Error, ValueError, UnicodeEncodeError):
            blob = b""
        if len(blob) < _NONCE_SIZE + 16:
            raise ConfigurationError(f"cannot decrypt the stored secret ({aad}): malformed ciphertext")
        return blob


def _check_optional_str(name: str, value: object) -> None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"Secrets.{name} must be a str or None, not {type(value).__name__}")


@dataclass(frozen=True, slots=True, repr=False)
class Secrets:
    """A connection's credentials. ``repr()`` and ``str()`` redact every value.

    Attributes:
        api_key: Kustomer API key (API-key connections).
        access_token: OAuth access token.
        refresh_token: OAuth refresh token.
        token_type: OAuth token type (usually ``Bearer``).
        extra: other per-connection secrets by name (OAuth client secret, webhook signing token, ...).
    """

    api_key: str | None = None
    access_token: str | None = None
    refresh_token: str | None = None
    token_type: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("api_key", "access_token", "refresh_token", "token_type"):
            _check_optional_str(name, getattr(self, name))
        if not isinstance(self.extra, Mapping):
            raise TypeError(f"Secrets.extra must be a mapping, not {type(self.extra).__name__}")
        copied = dict(self.extra)
        for key, value in copied.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError("Secrets.extra must map str to str")
        object.__setattr__(self, "extra", copied)  # a private copy: callers cannot mutate it afterwards

    def __repr__(self) -> str:
        def show(value: str | None) -> str:
            return "None" if value is None else _REDACTED

        extra = ", ".join(f"{key!r}: {_REDACTED}" for key in sorted(self.extra))
        return (
            f"Secrets(api_key={show(self.api_key)}, access_token={show(self.access_token)}, "
            f"refresh_token={show(self.refresh_token)}, token_type={show(self.token_type)}, "
            f"extra={{{extra}}})"
        )

    __str__ = __repr__

    def to_json(self) -> str:
        """Serialise for encryption (the result contains the secrets in clear: encrypt it).

        Returns:
            Compact JSON text.
        """
        return json.dumps(
            {
                "api_key": self.api_key,
                "access_token": self.access_token,
                "refresh_token": self.refresh_token,
                "token_type": self.token_type,
                "extra": self.extra,
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Secrets:
        """Parse what :meth:`to_json` produced (unknown keys are ignored).

        Args:
            text: JSON text.

        Returns:
            The secrets.

        Raises:
            ConfigurationError: the text is not such JSON (the message never contains the text).
        """
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise TypeError("not an object")  # noqa: TRY301 - folded into the error below
            return cls(
                api_key=data.get("api_key"),
                access_token=data.get("access_token"),
                refresh_token=data.get("refresh_token"),
                token_type=data.get("token_type"),
                extra=data.get("extra") or {},
            )
        except (ValueError, TypeError):
            raise ConfigurationError("stored secrets are malformed (cannot parse the decrypted JSON)") from None
