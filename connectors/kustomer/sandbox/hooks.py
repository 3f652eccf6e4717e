"""Inbound web hooks (kustomer-api.md §2.8; shape from the Okendo integration guide).

``POST /v1/hooks/web`` creates a hook (``url = <base>/v1/hooks/web/<hash>``, ``eventName =
kustomer.hooks.web.<id>.receive``). Posting to the hook's URL with a token holding ``org.hooks`` records a
*transaction* — the event a workflow would be triggered with::

    {"id": ..., "type": "transaction",
     "attributes": {"createdAt": "...", "data": <the posted body>},
     "relationships": {
         "org": {"data": {"type": "org", "id": ...}, "links": {"self": "/v1/org/<id>"}},
         "hook": {"data": {"type": "web_hook", "id": ...}, "links": {"self": "/v1/hooks/web/<id>"}}}}

Bodies may be JSON, form data (url-encoded or multipart; files become ``{filename, contentType, size}``) or
XML (converted to nested objects; attributes as ``@name``, mixed text as ``#text``; DTDs refused), up to
``max_hook_body_bytes`` (400 kb; larger -> 413). Transactions are kept in ``sb.state.hook_transactions`` and
readable at ``GET /sandbox/hooks/transactions``. The post is answered ``200 {"data": <transaction>}``.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any

from starlette.datastructures import UploadFile
from starlette.requests import Request

from connectors.kustomer.sandbox.errors import SandboxError
from connectors.kustomer.sandbox.store import Record
from connectors.kustomer.sandbox.timeutil import iso

if TYPE_CHECKING:
    from connectors.kustomer.sandbox.app import Sandbox

__all__ = ["parse_hook_body", "record_transaction", "xml_to_data"]


def xml_to_data(text: str) -> dict[str, Any]:
    """Convert an XML document to nested dicts (``{"root": {...}}``).

    Raises:
        SandboxError: 400 for malformed XML or a document with a DTD.
    """
    if "<!DOCTYPE" in text.upper() or "<!ENTITY" in text.upper():
        raise SandboxError(400, "XML bodies with a DTD are not accepted")
    try:
        # Untrusted input: entity declarations are refused above; expat limits amplification itself.
        root = ET.fromstring(text)  # noqa: S314
    except ET.ParseError as exc:
        raise SandboxError(400, f"Invalid XML body: {exc}") from None
    return {root.tag: _element(root)}


def _element(element: ET.Element) -> Any:
    children = list(element)
    text = (element.text or "").strip()
    if not children and not element.attrib:
        return text
    out: dict[str, Any] = {f"@{k}": v for k, v in element.attrib.items()}
    for child in children:
        value = _element(child)
        if child.tag in out:
            existing = out[child.tag]
            out[child.tag] = [*existing, value] if isinstance(existing, list) else [existing, value]
        else:
            out[child.tag] = value
    if text:
        out["#text"] = text
    return out


async def parse_hook_body(request: Request) -> Any:
    """The posted body as data, by content type (JSON, form, XML; anything else is kept as text).

    Raises:
        SandboxError: 400 for malformed JSON or XML.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    if content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        data: dict[str, Any] = {}
        async with request.form() as form:
            for key, value in form.multi_items():
                item: Any = (
                    {"filename": value.filename, "contentType": value.content_type, "size": value.size}
                    if isinstance(value, UploadFile)
                    else value
                )
                if key in data:
                    existing = data[key]
                    data[key] = [*existing, item] if isinstance(existing, list) else [existing, item]
                else:
                    data[key] = item
        return data
    text = raw.decode("utf-8", errors="replace")
    if content_type.endswith("xml"):
        return xml_to_data(text)
    if content_type.endswith("json") or (not content_type and text.lstrip()[:1] in ("{", "[")):
        if not text.strip():
            return {}
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise SandboxError(400, f"Invalid JSON body: {exc}") from None
    return {"body": text}


def record_transaction(sb: Sandbox, hook: Record, data: Any) -> dict[str, Any]:
    """Store and return a hook transaction shaped like Kustomer's."""
    org = sb.state.org.id
    transaction = {
        "id": sb.ids.new(),
        "type": "transaction",
        "attributes": {"createdAt": iso(sb.now_ms()), "data": data},
        "relationships": {
            "org": {"data": {"type": "org", "id": org}, "links": {"self": f"/v1/org/{org}"}},
            "hook": {
                "data": {"type": "web_hook", "id": hook.id},
                "links": {"self": f"/v1/hooks/web/{hook.id}"},
            },
        },
    }
    sb.state.hook_transactions.append(transaction)
    return transaction
