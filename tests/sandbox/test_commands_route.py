"""``POST /v1/commands/{name}/run`` in the sandbox: registration, secret settings, audit-free secrets."""

from __future__ import annotations

import httpx
import pytest

from connectors.kustomer.client import KustomerClient
from connectors.kustomer.sandbox import Sandbox, SandboxSettings, running_sandbox
from connectors.runtime.auth import ApiKeyAuth


def _definition(base_url: str) -> dict[str, object]:
    return {
        "app": "acmetools",
        "version": "1.0.0",
        "commands": [
            {
                "name": "acmetools.app.whoami",
                "displayName": "Who am I",
                "permittedArgs": ["page"],
                "url": base_url + "/v1/customers?pageSize=1&page={{{page}}}",
                "httpMethod": "get",
                "auditLogging": True,
                "appSettings": {"authToken": {"key": "acmetools.default.authToken"}},
            }
        ],
    }


@pytest.mark.http
def test_run_command_against_a_real_target_with_a_secret_setting() -> None:
    with running_sandbox(SandboxSettings(customers=3)) as (sb, base_url):
        key = sb.mint_api_key(name="caller")
        target_key = sb.mint_api_key(roles=["org.permission.customer.read"], name="command target")
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base_url, headers=headers) as http:
            created = http.post("/v1/apps/available", json=_definition(base_url))
            assert created.status_code == 201, created.text
            admin = http.put("/sandbox/app-settings", json={"acmetools.default.authToken": target_key})
            assert admin.status_code == 200
            run = http.post(
                "/v1/commands/acmetools.whoami/run",  # resolved to acmetools.app.whoami, as Kustomer's example does
                json={"headers": {"Authorization": "Bearer {{authToken}}"}, "args": {"page": "1"}},
            )
            assert run.status_code == 200, run.text
            result = run.json()
            assert result["status"] == 200
            assert len(result["body"]["data"]) == 1
            assert target_key not in run.text
            refused = http.post("/v1/commands/acmetools.app.whoami/run", json={"args": {"nope": "x"}})
            assert refused.status_code == 400
            assert "nope" in refused.text


@pytest.mark.anyio
async def test_client_run_command_and_role_check() -> None:
    sb = Sandbox(SandboxSettings(customers=1))
    no_apps = sb.mint_api_key(roles=["org.permission.customer.read"])
    async with KustomerClient(auth=ApiKeyAuth(no_apps), base_url=sb.base_url, transport=sb.transport()) as client:
        from connectors.errors import PermissionDeniedError

        with pytest.raises(PermissionDeniedError, match="apps"):
            await client.run_command("acmetools.app.whoami")
    invalid = {"app": "acmetools", "commands": [{"name": "wrongprefix.cmd", "url": "https://x", "httpMethod": "get"}]}
    async with httpx.AsyncClient(transport=sb.transport(), base_url=sb.base_url) as http:
        response = await http.put("/sandbox/apps/acmetools", json=invalid)
        assert response.status_code == 400
        assert "commands/0/name" in response.text
