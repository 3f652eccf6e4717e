"""Routers of the host app, one module per area."""

from __future__ import annotations

__all__: list[str] = []
