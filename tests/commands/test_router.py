"""The commands router mounted on a tiny FastAPI app: registration and runs over HTTP."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI, Request

from connectors.kustomer.commands import (
    CommandRegistries,
    CommandResult,
    CommandRunner,
    command_run_path,
    commands_router,
)

pytestmark = pytest.mark.anyio

RUN = command_run_path("ecommstore.app.store.refundOrder")
RUN_BODY = {
    "body": {"foo": "bar"},
    "headers": {"Authorization": "Bearer {{authToken}}"},
    "args": {"store": "acme"},
}


def header_org(request: Request) -> str:
    return request.headers.get("x-org", "default")


async def async_header_org(request: Request) -> str:
    return header_org(request)


@pytest.fixture
def runner(target, settings, clock):
    return CommandRunner(registries=CommandRegistries(), settings=settings, transport=target.transport, clock=clock)


@pytest.fixture
def client(runner):
    api = FastAPI()
    api.include_router(commands_router(runner, org_resolver=async_header_org))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://sandbox.test")


async def register(client, app, org="org-1"):
    response = await client.post("/v1/apps/available", json=app, headers={"x-org": org})
    assert response.status_code == 201, response.text
    return response


async def test_register_then_run(client, seed_app, target, secret):
    async with client:
        registered = await register(client, seed_app)
        assert registered.json()["data"]["id"] == "ecommstore"
        assert registered.json()["data"]["type"] == "app"
        assert registered.json()["data"]["attributes"]["commands"][0]["name"] == "ecommstore.app.store.refundOrder"
        response = await client.post(RUN, json=RUN_BODY, headers={"x-org": "org-1"})
    assert response.status_code == 200
    result = CommandResult.model_validate(response.json())
    assert (result.status, result.source, result.ok, result.body) == (200, "live", True, {"foo": "live-1"})
    assert response.json()["cacheAgeSeconds"] is None
    assert target.requests[0].headers["authorization"] == f"Bearer {secret}"
    assert secret not in response.text


async def test_name_without_app_infix_and_url_args_alias(client, seed_app, target):
    async with client:
        await register(client, seed_app)
        body = {"body": {"foo": "x"}, "headers": RUN_BODY["headers"], "urlArgs": {"store": "dunder-mifflin"}}
        response = await client.post(
            command_run_path("ecommstore.store.refundOrder"), json=body, headers={"x-org": "org-1"}
        )
    assert response.status_code == 200
    assert target.requests[0].url.host == "dunder-mifflin.example-ecommstore.com"


async def test_invalid_definition_is_a_400_listing_every_problem(client, seed_app):
    seed_app["commands"][0]["cacheSeconds"] = 5
    seed_app["commands"][0]["httpMethod"] = "POST"
    async with client:
        response = await client.post("/v1/apps/available", json=seed_app)
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert {error["source"]["pointer"] for error in errors} == {
        "/commands/0/cacheSeconds",
        "/commands/0/httpMethod",
    }
    assert all(error["code"] == "command_definition" and error["status"] == "400" for error in errors)


async def test_root_problem_points_at_the_document(client):
    async with client:
        response = await client.post("/v1/apps/available", json=[1])
    assert response.json()["errors"][0]["source"]["pointer"] == ""


async def test_invalid_json_bodies(client, seed_app):
    async with client:
        bad_app = await client.post("/v1/apps/available", content=b"{nope")
        await register(client, seed_app)
        bad_run = await client.post(RUN, content=b"{nope", headers={"x-org": "org-1"})
        empty_run = await client.post(RUN, headers={"x-org": "org-1"})
    assert bad_app.status_code == 400
    assert bad_app.json()["errors"][0]["title"] == "the request body is not valid JSON"
    assert bad_run.status_code == 400
    # An empty body is an empty run request: the inputSchema then refuses the missing body.
    assert empty_run.status_code == 400
    assert "'foo' is a required property" in empty_run.json()["errors"][0]["title"]


async def test_bad_run_request_shape(client, seed_app):
    async with client:
        await register(client, seed_app)
        response = await client.post(RUN, json={"argz": {}, "headers": {"a": 1}}, headers={"x-org": "org-1"})
    assert response.status_code == 400
    pointers = {error.get("source", {}).get("pointer") for error in response.json()["errors"]}
    assert pointers == {"/argz", "/headers/a"}
    titles = " ".join(error["title"] for error in response.json()["errors"])
    assert "Extra inputs are not permitted" in titles


async def test_unknown_command_is_404_and_registries_are_per_org(client, seed_app):
    async with client:
        await register(client, seed_app, org="org-1")
        other_org = await client.post(RUN, json=RUN_BODY, headers={"x-org": "org-2"})
        unknown = await client.post(command_run_path("ecommstore.app.nope"), json={}, headers={"x-org": "org-1"})
    assert other_org.status_code == 404
    assert unknown.status_code == 404
    assert unknown.json()["errors"][0]["title"] == "unknown command 'ecommstore.app.nope'"


async def test_refused_run_is_400(client, seed_app, target):
    async with client:
        await register(client, seed_app)
        response = await client.post(RUN, json=RUN_BODY | {"args": {"other": "x"}}, headers={"x-org": "org-1"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "command_error"
    assert "args not in permittedArgs: other" in response.json()["errors"][0]["title"]
    assert target.calls == 0


async def test_upstream_failure_is_502_with_the_result(client, seed_app, target, secret):
    target.status = 503
    target.body = {"error": f"overloaded {secret}"}
    async with client:
        await register(client, seed_app)
        response = await client.post(RUN, json=RUN_BODY, headers={"x-org": "org-1"})
    assert response.status_code == 502
    document = response.json()
    assert (document["ok"], document["status"], document["fallbackActive"]) == (False, 503, True)
    assert document["body"] == {"error": "overloaded ***"}
    assert document["errors"] == [
        {"status": "502", "code": "command_target_error", "title": "the command target answered 503"}
    ]
    assert secret not in response.text


async def test_fallback_over_http(client, seed_app, target, clock):
    async with client:
        await register(client, seed_app)
        await client.post(RUN, json=RUN_BODY, headers={"x-org": "org-1"})
        clock.advance(16)
        target.status = 500
        response = await client.post(RUN, json=RUN_BODY, headers={"x-org": "org-1"})
    assert response.status_code == 200
    assert (response.json()["source"], response.json()["cacheAgeSeconds"]) == ("fallback", 16)


async def test_registration_route_can_be_left_out_and_default_org_comes_from_request_state(runner, seed_app):
    api = FastAPI()

    @api.middleware("http")
    async def auth(request: Request, call_next):  # what a host's auth layer would do
        request.state.org_id = "org-1"
        return await call_next(request)

    api.include_router(commands_router(runner, register_path=None))
    runner.registry_for("org-1").register(seed_app)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://t") as client:
        assert (await client.post("/v1/apps/available", json=seed_app)).status_code == 404
        assert (await client.post(RUN, json=RUN_BODY)).status_code == 200


async def test_default_org_without_request_state(runner, acme_app):
    api = FastAPI()
    api.include_router(commands_router(runner, org_resolver=header_org, register_path="/apps"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://t") as client:
        assert (await client.post("/apps", json=acme_app())).status_code == 201
        assert (await client.post(command_run_path("acme.app.thing"), json={})).status_code == 200
    assert len(runner.registry_for("default")) == 1
