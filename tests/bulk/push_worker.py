"""A push in its own process (killed with SIGKILL by ``test_crash.py``).

Usage: ``python push_worker.py <sqlite db> <rows.jsonl> <owner>``; the store key is in ``CONNECTORS_SECRET_KEY``.
Prints ``ready`` once connected, then one ``progress <done>`` line per progress report.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from connectors import Connectors, Settings
from connectors.runtime.bulk import PushOptions
from connectors.runtime.secrets import SecretBox, parse_secret_key
from connectors.runtime.store import ConnectionStore


async def main(db: str, rows: list[dict[str, object]], owner: str) -> None:
    key = parse_secret_key(os.environ["CONNECTORS_SECRET_KEY"], source="CONNECTORS_SECRET_KEY")
    store = ConnectionStore(f"sqlite:///{db}", secret_box=SecretBox(key))
    settings = Settings(kustomer={"rate_limit": 1_000_000, "search_limit": 1_000_000})
    async with Connectors(settings=settings, store=store) as hub:
        conn = await hub.get("kustomer", owner)
        print("ready", flush=True)
        options = PushOptions(batch_size=40, concurrency=2, poll_interval=0.01, poll_max_interval=0.05)
        await conn.sync("genericContact").push(
            rows,
            match="email",
            options=options,
            on_progress=lambda p: print(f"progress {p.done}", flush=True),
        )
    print("finished", flush=True)


if __name__ == "__main__":
    lines = Path(sys.argv[2]).read_text(encoding="utf-8").splitlines()
    asyncio.run(main(sys.argv[1], [json.loads(line) for line in lines], sys.argv[3]))
