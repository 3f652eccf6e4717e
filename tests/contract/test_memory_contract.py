"""The example third-party connector (``examples/memory_connector.py``) passes the contract suite.

The contract class lives in ``examples/memory_connector_contract.py``, exactly as a plugin author would
write it; this module only loads it so pytest collects it here.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load(name: str) -> types.ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_load("memory_connector")
TestMemoryConnectorContract = _load("memory_connector_contract").TestMemoryConnectorContract
