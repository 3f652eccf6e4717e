"""Version of the ``unified-connectors`` distribution."""

__version__ = "0.1.0"
