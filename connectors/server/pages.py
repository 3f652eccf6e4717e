"""Server-rendered HTML: the layout template and small escaping helpers (no template engine needed).

Every dynamic value goes through :func:`esc`; pages are served with a restrictive Content-Security-Policy
(scripts and styles only from this app, no framing).
"""

from __future__ import annotations

import html
from functools import cache
from importlib import resources
from string import Template
from typing import Final

from starlette.responses import HTMLResponse

__all__ = ["HTML_HEADERS", "esc", "render_page"]

HTML_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def esc(value: object) -> str:
    """HTML-escape ``value`` (quotes included)."""
    return html.escape(str(value), quote=True)


@cache
def _layout() -> Template:
    text = resources.files("connectors.server").joinpath("templates/layout.html").read_text(encoding="utf-8")
    return Template(text)


def render_page(
    title: str, body: str, *, status: int = 200, footer: str = "", headers: dict[str, str] | None = None
) -> HTMLResponse:
    """Render ``body`` (already-escaped HTML) in the layout.

    Args:
        title: the page title (escaped here).
        body: inner HTML.
        status: HTTP status.
        footer: footer HTML.
        headers: extra headers.
    """
    document = _layout().substitute(title=esc(title), body=body, footer=footer)
    return HTMLResponse(document, status_code=status, headers={**HTML_HEADERS, **(headers or {})})
