"""Registered app definitions and command-name resolution."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from connectors.errors import CommandDefinitionError, CommandError
from connectors.kustomer.commands._models import AppDefinition, CommandDefinition, parse_app_definition

__all__ = ["CommandRegistries", "CommandRegistry", "RegisteredCommand"]


@dataclass(frozen=True, slots=True)
class RegisteredCommand:
    """A command together with the app that defines it.

    Attributes:
        app: the app definition.
        command: the command definition.
    """

    app: AppDefinition
    command: CommandDefinition


class CommandRegistry:
    """The app definitions available to one scope (an org, or the CLI's single file).

    Registering an app again replaces its previous definition (a new version). Command names are unique
    across every registered app.

    Args:
        definitions: app definitions to register right away.
    """

    def __init__(self, definitions: Iterable[Any] = ()) -> None:
        self._apps: dict[str, AppDefinition] = {}
        self._commands: dict[str, RegisteredCommand] = {}
        for definition in definitions:
            self.register(definition)

    def __repr__(self) -> str:
        return f"CommandRegistry(apps={sorted(self._apps)}, commands={len(self._commands)})"

    def __iter__(self) -> Iterator[RegisteredCommand]:
        return iter(self._commands.values())

    def __len__(self) -> int:
        return len(self._commands)

    @property
    def apps(self) -> Mapping[str, AppDefinition]:
        """Registered app definitions by app id."""
        return dict(self._apps)

    def register(self, definition: Any) -> AppDefinition:
        """Validate and register an app definition (replacing an earlier version of the same app).

        Args:
            definition: parsed app-definition JSON or an :class:`AppDefinition`.

        Returns:
            The validated definition.

        Raises:
            CommandDefinitionError: the definition breaks a rule, or a command name is already registered by
                another app.
        """
        app = parse_app_definition(definition)
        for index, command in enumerate(app.commands):
            owner = self._commands.get(command.name)
            if owner is not None and owner.app.app != app.app:
                raise CommandDefinitionError(
                    f"must be globally unique: already registered by app {owner.app.app!r}",
                    path=f"commands/{index}/name",
                )
        previous = self._apps.get(app.app)
        if previous is not None:
            for command in previous.commands:
                self._commands.pop(command.name, None)
        self._apps[app.app] = app
        for command in app.commands:
            self._commands[command.name] = RegisteredCommand(app=app, command=command)
        return app

    def unregister(self, app_id: str) -> None:
        """Remove an app and its commands (no error when it is not registered)."""
        app = self._apps.pop(app_id, None)
        for command in app.commands if app else ():
            self._commands.pop(command.name, None)

    def find(self, name: str) -> RegisteredCommand | None:
        """Find a command by name.

        The full name (``ecommstore.app.store.refundOrder``) is looked up first; a name without the ``.app.``
        infix (``ecommstore.store.refundOrder``, as in Kustomer's run examples) resolves to the command of app
        ``ecommstore`` called ``ecommstore.app.store.refundOrder``.

        Args:
            name: the name as the caller gave it.

        Returns:
            The command, or None.
        """
        found = self._commands.get(name)
        if found is None:
            app_id, dot, rest = name.partition(".")
            if dot and rest and not rest.startswith("app."):
                found = self._commands.get(f"{app_id}.app.{rest}")
        return found

    def resolve(self, name: str) -> RegisteredCommand:
        """Like :meth:`find`, but raise when there is no such command.

        Raises:
            CommandError: no registered command has this name.
        """
        found = self.find(name)
        if found is None:
            raise CommandError(f"unknown command {name!r}")
        return found


class CommandRegistries:
    """One :class:`CommandRegistry` per org, created on first use; call it with an org id."""

    def __init__(self) -> None:
        self._by_org: dict[str, CommandRegistry] = {}

    def __repr__(self) -> str:
        return f"CommandRegistries(orgs={sorted(self._by_org)})"

    def __call__(self, org_id: str) -> CommandRegistry:
        """Return the registry of ``org_id``."""
        registry = self._by_org.get(org_id)
        if registry is None:
            registry = self._by_org[org_id] = CommandRegistry()
        return registry
