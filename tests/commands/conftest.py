"""Fixtures for the Apps Platform command tests: the seed app, a fake clock and a controllable target."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.kustomer.commands import CommandRegistry, CommandRunner, InMemoryAppSettings

SEED_APP = json.loads((Path(__file__).parent / "data" / "ecommstore.json").read_text())
SECRET = "tok_5ecr3t-VALUE-4242"
SETTING_KEY = "ecommstore.default.authToken"


class FakeClock:
    """Injectable clock: ``clock()`` returns ``now``; ``advance(seconds)`` moves it (no sleeping)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Target:
    """A controllable command target: flip ``status`` between 200/4xx/5xx, or set ``unreachable``."""

    def __init__(self) -> None:
        self.status = 200
        self.body: Any = {"foo": "live-1"}
        self.headers: dict[str, str] = {}
        self.unreachable = False
        self.requests: list[httpx.Request] = []

    @property
    def calls(self) -> int:
        return len(self.requests)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.unreachable:
            raise httpx.ConnectError("connection refused", request=request)
        if isinstance(self.body, bytes | str):
            return httpx.Response(self.status, content=self.body, headers=self.headers)
        return httpx.Response(self.status, json=self.body, headers=self.headers)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


@pytest.fixture
def seed_app() -> dict[str, Any]:
    """The Commands page's own example app definition (a fresh copy per test)."""
    return copy.deepcopy(SEED_APP)


@pytest.fixture
def seed_command(seed_app: dict[str, Any]) -> dict[str, Any]:
    """The example's single command definition (mutable: edit it, then use ``seed_app``)."""
    command: dict[str, Any] = seed_app["commands"][0]
    return command


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def target() -> Target:
    return Target()


@pytest.fixture
def secret() -> str:
    return SECRET


@pytest.fixture
def settings() -> InMemoryAppSettings:
    return InMemoryAppSettings({"org-1": {SETTING_KEY: SECRET}, "org-2": {SETTING_KEY: SECRET + "-two"}})


@pytest.fixture
def make_runner(clock: FakeClock, target: Target, settings: InMemoryAppSettings) -> Callable[..., CommandRunner]:
    """``make_runner(*definitions)`` -> a runner over the target, clock and settings (seed app by default)."""

    def make(*definitions: Any) -> CommandRunner:
        registry = CommandRegistry(definitions or [copy.deepcopy(SEED_APP)])
        return CommandRunner(registries=registry, settings=settings, transport=target.transport, clock=clock)

    return make


def command_app(**command: Any) -> dict[str, Any]:
    """An app ``acme`` with one command (url/method defaults filled in)."""
    command.setdefault("name", "acme.app.thing")
    command.setdefault("url", "https://api.acme.test/things")
    command.setdefault("httpMethod", "post")
    return {"app": "acme", "version": "1.0.0", "commands": [command]}


@pytest.fixture
def acme_app() -> Callable[..., dict[str, Any]]:
    """Factory: ``acme_app(**command_properties)`` -> an app definition with that one command."""
    return command_app
