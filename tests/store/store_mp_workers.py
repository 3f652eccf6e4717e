"""Worker functions for the cross-process tests (imported by name in ``spawn`` children).

Each returns its outcome through a queue as plain data; an exception is reported as its repr.
"""

from __future__ import annotations

import os
import time
from typing import Any

from connectors.runtime.secrets import SecretBox, Secrets
from connectors.runtime.store import ConnectionStore


def seen_once_worker(url: str, key: bytes, barrier: Any, results: Any) -> None:
    try:
        with ConnectionStore(url, secret_box=SecretBox(key)) as store:
            barrier.wait(timeout=60)
            first = store.seen_once("mp", "evt-race", now=time.time(), retention_seconds=3600)
        results.put(("ok", first))
    except BaseException as exc:  # reported to the parent
        results.put(("error", repr(exc)))


def refresh_worker(url: str, key: bytes, connection_id: str, rounds: int, barrier: Any, results: Any) -> None:
    """Lock, read the counter and token_version, sleep, save counter + 1: ``rounds`` times."""
    try:
        with ConnectionStore(url, secret_box=SecretBox(key)) as store:
            barrier.wait(timeout=60)
            for i in range(rounds):
                with store.refresh_lock(connection_id) as locked:
                    version = locked.record.token_version
                    counter = int(locked.record.secrets.extra["counter"])
                    time.sleep(0.01)  # widen the race window
                    saved = locked.save_tokens(
                        Secrets(
                            access_token=f"at-{os.getpid()}-{i}",
                            refresh_token=locked.record.secrets.refresh_token,
                            extra={"counter": str(counter + 1)},
                        ),
                        access_expires_at=time.time() + 3600,
                    )
                    if saved.token_version != version + 1:  # pragma: no cover - reported below
                        raise AssertionError(f"token_version {version} -> {saved.token_version}")
        results.put(("ok", rounds))
    except BaseException as exc:  # reported to the parent
        results.put(("error", repr(exc)))
