"""Curated public API: ``__all__`` complete and sorted; lazy imports; the error tree drawn in full."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import pytest

PACKAGES = [
    "connectors",
    "connectors.errors",
    "connectors.hookspecs",
    "connectors.mapping",
    "connectors.registry",
    "connectors.settings",
    "connectors.sync",
    "connectors.runtime.connection",
    "connectors.runtime.connector",
    "connectors.kustomer",
    "connectors.kustomer.sandbox",
    "unified_models",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_unique_and_importable(name: str) -> None:
    # Order is enforced by ruff (RUF022, isort-style); here: no duplicates and every name resolves.
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert len(exported) == len(set(exported))
    for attribute in exported:
        assert getattr(module, attribute) is not None, attribute


def test_error_tree_docstring_lists_every_error() -> None:
    from connectors import errors

    doc = errors.__doc__ or ""
    classes = [
        obj
        for _, obj in inspect.getmembers(errors, inspect.isclass)
        if issubclass(obj, errors.ConnectorError) and obj.__module__ == errors.__name__
    ]
    missing = [cls.__name__ for cls in classes if cls.__name__ not in doc]
    assert not missing
    assert set(errors.__all__) >= {cls.__name__ for cls in classes}


def test_every_error_class_is_a_connector_error_with_a_code() -> None:
    from connectors import errors

    for name in errors.__all__:
        obj = getattr(errors, name)
        if inspect.isclass(obj):
            assert issubclass(obj, errors.ConnectorError)
            assert obj.code


def test_status_table() -> None:
    from connectors import errors

    assert errors.error_class_for_status(404) is errors.NotFoundError
    assert errors.error_class_for_status(429) is errors.RateLimitError
    assert errors.error_class_for_status(503) is errors.ServerError
    assert errors.error_class_for_status(418) is errors.APIStatusError


def test_import_is_lazy() -> None:
    code = (
        "import sys, connectors, unified_models;"
        "heavy = [m for m in ('httpx', 'fastapi', 'sqlalchemy', 'typer', 'authlib', 'redis') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_sync_facade_mirrors_the_async_api() -> None:
    from connectors.runtime.connection import Connection, Connectors, Fields, Resources
    from connectors.sync import SyncConnection, SyncConnectors, SyncFields, SyncResources

    def public(cls: type) -> set[str]:
        return {n for n, v in vars(cls).items() if not n.startswith("_") and callable(v)}

    assert public(Resources) <= public(SyncResources) | {"backend"}
    assert public(Fields) <= public(SyncFields)
    assert {"whoami", "resources", "fields", "proxy", "aclose"} <= public(SyncConnection)
    wanted = {"connect", "authorize", "complete_authorization", "get", "get_by_id", "list", "disconnect"}
    assert wanted <= public(Connectors)
    assert wanted <= public(SyncConnectors)
    assert public(Connection) - public(SyncConnection) <= {"operation", "require", "permission_error", "sync"}
