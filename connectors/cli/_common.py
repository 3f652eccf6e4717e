"""Helpers shared by the CLI sub-apps: running async code, one-line errors, output formats."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from functools import wraps
from typing import Any, NoReturn, ParamSpec, TypeVar

import typer

__all__ = ["debug_enabled", "fail", "handle_errors", "print_json", "run"]

P = ParamSpec("P")
R = TypeVar("R")


def debug_enabled() -> bool:
    """Whether ``--debug`` (or ``CONNECTORS_DEBUG=1``) asked for tracebacks."""
    return os.environ.get("CONNECTORS_DEBUG", "") in ("1", "true", "yes")


def fail(message: str, *, code: int = 1) -> NoReturn:
    """Print ``error: <message>`` on stderr and exit non-zero."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn any :class:`~connectors.errors.ConnectorError` (and bad input) into one clear line.

    With ``--debug`` the traceback is shown instead.
    """

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from pydantic import ValidationError

        from connectors.errors import ConnectorError

        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except (ConnectorError, ValidationError, ValueError, OSError) as exc:
            if debug_enabled():
                raise
            fail(f"{type(exc).__name__}: {exc}")

    return wrapper


def run(coro: Coroutine[Any, Any, R] | Awaitable[R]) -> R:
    """Run a coroutine to completion on a fresh event loop."""

    async def _wrap() -> R:
        return await coro

    return asyncio.run(_wrap())


def print_json(value: Any) -> None:
    """Print ``value`` as indented JSON on stdout."""
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")
