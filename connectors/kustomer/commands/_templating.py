"""Handlebars interpolation for command URLs, headers and bodies (via ``pydantic-handlebars``).

Kustomer renders commands with Handlebars.js: ``{{{arg}}}`` is inserted raw, ``{{arg}}`` is HTML-escaped with
Handlebars' ``escapeExpression`` (``& < > " ' ` =``), and an unknown or missing variable renders as the
empty string. ``pydantic-handlebars`` implements exactly that (``auto_escape=True``); it does not support
partials, and its ``log`` helper is removed here because it would write rendered values (possibly the secret)
to a warning.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any, Final

import httpx
from pydantic_handlebars import CompiledTemplate, HandlebarsEnvironment, HandlebarsError, extract_dependencies

__all__ = [
    "HOST_ARG_CHARACTERS",
    "Redactor",
    "compile_template",
    "render_json",
    "render_text",
    "resolved_url_problem",
    "template_error",
    "url_template_problems",
]

HOST_ARG_CHARACTERS: Final = "A-Za-z0-9.-"
"""Characters an interpolation may add to a URL's host part: it can name a subdomain, never a new host."""

_ENV: Final = HandlebarsEnvironment(auto_escape=True)
_ENV.unregister_helper("log")

_SCHEME = re.compile(r"(https?)://", re.IGNORECASE)
_TAG = re.compile(r"\{\{\{?.*?\}?\}\}", re.DOTALL)
_AUTHORITY_END = "/?#"


@lru_cache(maxsize=1024)
def compile_template(source: str) -> CompiledTemplate:
    """Compile (and memoise) a Handlebars template.

    Args:
        source: the template text.

    Returns:
        The compiled template.

    Raises:
        HandlebarsError: the template does not parse.
    """
    return _ENV.compile(source)


def template_error(source: str) -> str | None:
    """Return why ``source`` is not a valid template, or None when it compiles."""
    try:
        compile_template(source)
    except HandlebarsError as exc:
        return f"not a valid Handlebars template: {exc}"
    return None


def render_text(source: str, context: Mapping[str, Any]) -> str:
    """Render one template string.

    Args:
        source: the template text; returned unchanged when it holds no ``{{``.
        context: variables by name.

    Returns:
        The rendered text.

    Raises:
        HandlebarsError: the template does not parse or fails to render.
    """
    if "{{" not in source:
        return source
    return compile_template(source).render(dict(context))


def render_json(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every string value inside a JSON value (object keys, numbers and booleans stay as they are).

    Args:
        value: a JSON value (dicts, lists, strings, numbers, booleans, None).
        context: variables by name.

    Returns:
        A copy of ``value`` with each string rendered.

    Raises:
        HandlebarsError: a string does not parse or fails to render.
    """
    if isinstance(value, str):
        return render_text(value, context)
    if isinstance(value, Mapping):
        return {key: render_json(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [render_json(item, context) for item in value]
    return value


def _authority_end(text: str, start: int, *, templated: bool) -> int:
    """Index where the authority starting at ``start`` ends (skipping ``{{ ... }}`` tags in a template)."""
    index = start
    while index < len(text):
        if templated and text.startswith("{{", index):
            close = text.find("}}", index + 2)
            if close < 0:
                return len(text)
            index = close + 2
            while index < len(text) and text[index] == "}":
                index += 1
            continue
        if text[index] in _AUTHORITY_END:
            return index
        index += 1
    return index


def _split_url(text: str, *, templated: bool = True) -> tuple[str, str] | None:
    """``(scheme, authority)`` of a URL or URL template, or None without a literal http(s) scheme."""
    match = _SCHEME.match(text)
    if match is None:
        return None
    return match.group(1).lower(), text[match.end() : _authority_end(text, match.end(), templated=templated)]


def url_template_problems(template: str) -> list[str]:
    """Check a command's ``url`` template.

    Rules: the scheme is a literal ``http://`` or ``https://`` (an arg can never switch protocol); the
    template parses; the host part is not empty; ``{{authToken}}`` is not used (secrets go in headers or body
    only, never in a URL that ends up in access and audit logs).

    Args:
        template: the ``url`` property.

    Returns:
        Messages for each broken rule (empty when the template is fine).
    """
    problems: list[str] = []
    split = _split_url(template)
    if split is None:
        problems.append("must start with a literal 'https://' or 'http://'")
    elif not split[1]:
        problems.append("has no host after the scheme")
    error = template_error(template)
    if error is not None:
        problems.append(error)
    elif "authToken" in extract_dependencies(template):
        problems.append("must not use {{authToken}}: the secret app setting is only interpolated into headers and body")
    return problems


@lru_cache(maxsize=1024)
def _host_pattern(template: str) -> re.Pattern[str] | None:
    split = _split_url(template)
    if split is None:
        return None
    literals = _TAG.split(split[1])
    return re.compile(f"[{HOST_ARG_CHARACTERS}]*".join(re.escape(literal) for literal in literals), re.IGNORECASE)


def resolved_url_problem(template: str, resolved: str) -> str | None:
    """Check a rendered URL against its template.

    The rendered URL must parse as an absolute http(s) URL without user info, and its host part must be the
    template's host with each interpolation contributing only :data:`HOST_ARG_CHARACTERS`. So
    ``https://{{{store}}}.example.com`` can reach ``acme.example.com`` but an arg like ``evil.com/#`` can
    never send the request (and the ``authToken`` header) to ``evil.com``.

    Args:
        template: the command's ``url`` template.
        resolved: the rendered URL.

    Returns:
        Why the URL is refused, or None when it is acceptable.
    """
    pattern = _host_pattern(template)
    split = _split_url(resolved, templated=False)
    if pattern is None or split is None or split[0] not in ("http", "https"):
        return "the resolved URL is not an absolute http(s) URL"
    if not pattern.fullmatch(split[1]):
        return "args may only fill in the command URL's host name (letters, digits, '.', '-'), not change it"
    try:
        url = httpx.URL(resolved)
    except httpx.InvalidURL:
        return "the resolved URL is not a valid URL"
    if not url.host or url.userinfo:
        return "the resolved URL has no valid host"
    return None


class Redactor:
    """Replaces secret values with ``***`` in text and JSON values (errors, audit entries, responses)."""

    __slots__ = ("_secrets",)

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret containing another is replaced whole.
        self._secrets = sorted({secret for secret in secrets if secret}, key=len, reverse=True)

    def __repr__(self) -> str:
        return f"Redactor(secrets={len(self._secrets)})"

    def text(self, text: str) -> str:
        """Return ``text`` with every secret replaced by ``***``."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def json(self, value: Any) -> Any:
        """Return a copy of a JSON value with every secret inside its strings (and keys) replaced."""
        if not self._secrets:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.text(str(key)): self.json(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.json(item) for item in value]
        return value
