"""Serve the sandbox: ``python -m connectors.kustomer.sandbox [--port 8900] [--seed 42] [--customers N]``."""

from __future__ import annotations

import argparse

from connectors.kustomer.sandbox.server import serve
from connectors.kustomer.sandbox.settings import SandboxSettings


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and serve the sandbox."""
    parser = argparse.ArgumentParser(prog="python -m connectors.kustomer.sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--region", choices=("us", "eu", "in"), default="us")
    args = parser.parse_args(argv)
    serve(SandboxSettings(seed=args.seed, customers=args.customers, region=args.region), args.host, args.port)


if __name__ == "__main__":
    main()
