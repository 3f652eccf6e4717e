"""Contract-suite configuration: load the contract pytest plugin when its entry point is not installed yet.

With the ``pytest11`` entry point (``unified_connectors_contract``) pytest loads
:mod:`connectors.testing.plugin` itself; without it the plugin is registered here, so its marker and its
option defaults exist (the command-line options then need the entry point; the environment variables
``CONNECTORS_CONTRACT_BACKENDS`` and ``CONNECTORS_CONTRACT_RECORD_FROM`` always work).
"""

from __future__ import annotations

import pytest

import connectors.testing.plugin as contract_plugin

PLUGIN_NAME = "unified_connectors_contract"


def pytest_configure(config: pytest.Config) -> None:
    manager = config.pluginmanager
    if not manager.has_plugin(PLUGIN_NAME) and not manager.is_registered(contract_plugin):
        manager.register(contract_plugin, PLUGIN_NAME)
