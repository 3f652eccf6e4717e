"""The command runner: interpolation, args, secrets, schemas, results and the audit log."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from pydantic import ValidationError

from connectors.errors import CommandError
from connectors.kustomer.commands import (
    CommandRegistry,
    CommandResult,
    CommandRunner,
    CommandRunRequest,
    InMemoryAppSettings,
    SyncCommandRunner,
    command_run_path,
)

pytestmark = pytest.mark.anyio

AUTH = {"Authorization": "Bearer {{authToken}}"}


def sent_json(request: httpx.Request):
    return json.loads(request.content) if request.content else None


# --- the seed's own example ---


async def test_seed_example_runs(make_runner, target, secret):
    target.body = {"foo": 42, "refunded": True}
    runner = make_runner()
    result = await runner.run(
        "ecommstore.app.store.refundOrder",
        org_id="org-1",
        body={"foo": "bar"},
        headers=AUTH,
        args={"store": "dunder-mifflin"},
    )
    (request,) = target.requests
    assert request.method == "POST"
    assert str(request.url) == "https://dunder-mifflin.example-ecommstore.com/orders"
    assert request.headers["authorization"] == f"Bearer {secret}"
    assert request.headers["content-type"] == "application/json"
    assert sent_json(request) == {"foo": "bar"}
    assert result.ok
    assert result.status == 200
    assert result.source == "live"
    assert result.cache_age_seconds is None
    # outputSchema: foo converted to a string, additional properties allowed.
    assert result.body == {"foo": "42", "refunded": True}


async def test_seed_run_example_name_and_body(make_runner, target):
    # The seed's run example calls 'ecommstore.store.refundOrder' (no '.app.') with {"refundOption": true},
    # which its own inputSchema refuses: foo is required and no additional property is allowed.
    runner = make_runner()
    with pytest.raises(CommandError) as caught:
        await runner.run(
            "ecommstore.store.refundOrder",
            org_id="org-1",
            body={"refundOption": True},
            headers=AUTH,
            args={"store": "dunder-mifflin"},
        )
    message = str(caught.value)
    assert "'foo' is a required property" in message
    assert "'refundOption' was unexpected" in message
    assert target.calls == 0
    result = await runner.run(
        "ecommstore.store.refundOrder", org_id="org-1", body={"foo": "x"}, headers=AUTH, args={"store": "d"}
    )
    assert result.command == "ecommstore.app.store.refundOrder"


async def test_unknown_command(make_runner):
    with pytest.raises(CommandError, match=re.escape("unknown command 'ecommstore.app.nope'")):
        await make_runner().run("ecommstore.app.nope", org_id="org-1")


# --- interpolation ---


async def test_raw_and_escaped_interpolation_in_url_headers_and_body(make_runner, target, acme_app):
    app = acme_app(
        permittedArgs=["sub", "q", "note"],
        url="https://{{{sub}}}.acme.test/search?q={{{q}}}",
    )
    runner = make_runner(app)
    await runner.run(
        "acme.app.thing",
        headers={"X-Raw": "{{{note}}}", "X-Escaped": "{{note}}"},
        body={"text": "{{note}} / {{{note}}}", "nested": [{"deep": "{{{sub}}}"}], "n": 1, "{{sub}}": "key"},
        args={"sub": "eu", "q": "a'b", "note": "<a&b>=`\"'"},
    )
    (request,) = target.requests
    assert request.url.host == "eu.acme.test"
    assert request.url.params["q"] == "a'b"
    assert request.headers["x-raw"] == "<a&b>=`\"'"
    assert request.headers["x-escaped"] == "&lt;a&amp;b&gt;&#x3D;&#x60;&quot;&#x27;"
    assert sent_json(request) == {
        "text": "&lt;a&amp;b&gt;&#x3D;&#x60;&quot;&#x27; / <a&b>=`\"'",
        "nested": [{"deep": "eu"}],
        "n": 1,
        "{{sub}}": "key",  # object keys are never interpolated
    }


async def test_missing_and_unknown_variables_render_empty(make_runner, target, acme_app):
    runner = make_runner(acme_app(permittedArgs=["a", "b"], url="https://api.acme.test/{{{a}}}/x{{b}}"))
    await runner.run("acme.app.thing", headers={"X-U": "[{{unknown}}][{{{b}}}]"}, body={"v": "{{nothing.here}}"})
    (request,) = target.requests
    assert request.url.path == "//x"
    assert request.headers["x-u"] == "[][]"
    assert sent_json(request) == {"v": ""}


async def test_args_not_permitted_are_refused(make_runner, target, acme_app):
    runner = make_runner(acme_app(permittedArgs=["store"], auditLogging=True))
    with pytest.raises(CommandError, match=r"args not in permittedArgs: other, zeta \(permitted: store\)"):
        await runner.run("acme.app.thing", args={"store": "a", "zeta": "z", "other": "o"})
    with pytest.raises(CommandError, match=r"permitted: none"):
        await make_runner(acme_app()).run("acme.app.thing", args={"x": "1"})
    assert target.calls == 0
    (entry,) = runner.audit.entries
    assert entry.outcome == "refused"
    assert entry.args == {"store": "a", "zeta": "z", "other": "o"}


async def test_scalar_args_render_like_handlebars(make_runner, target, acme_app):
    runner = make_runner(
        acme_app(permittedArgs=["n", "f", "t", "z"], url="https://api.acme.test/{{n}}/{{f}}/{{t}}/{{z}}")
    )
    await runner.run("acme.app.thing", args={"n": 7, "f": 1.5, "t": True, "z": None})
    assert target.requests[0].url.path == "/7/1.5/true/"


@pytest.mark.parametrize("bad", [{"a": ["x"]}, {"a": {"b": 1}}])
async def test_args_must_be_scalars(make_runner, acme_app, bad):
    with pytest.raises(CommandError, match="arg 'a' must be a string"):
        await make_runner(acme_app(permittedArgs=["a"])).run("acme.app.thing", args=bad)


async def test_args_and_headers_must_be_objects(make_runner, acme_app):
    runner = make_runner(acme_app())
    with pytest.raises(CommandError, match="args must be an object"):
        await runner.run("acme.app.thing", args=["a"])
    with pytest.raises(CommandError, match="headers must be an object"):
        await runner.run("acme.app.thing", headers=["a"])


@pytest.mark.parametrize(
    "store",
    ["evil.test/#", "evil.test?", "evil.test#", "user@evil.test", "evil.test:443", "a b", "evil.test\\"],
)
async def test_args_cannot_move_the_request_to_another_host(make_runner, target, store):
    runner = make_runner()
    with pytest.raises(CommandError, match=r"args may only fill in|not a valid URL|no valid host"):
        await runner.run(
            "ecommstore.app.store.refundOrder",
            org_id="org-1",
            body={"foo": "x"},
            headers=AUTH,
            args={"store": store},
        )
    assert target.calls == 0


@pytest.mark.parametrize("store", ["acme", "acme-eu.shop", "A1"])
async def test_args_can_fill_in_a_subdomain(make_runner, target, store):
    await make_runner().run(
        "ecommstore.app.store.refundOrder",
        org_id="org-1",
        body={"foo": "x"},
        headers=AUTH,
        args={"store": store},
    )
    assert target.requests[0].url.host == f"{store.lower()}.example-ecommstore.com"


async def test_args_in_the_path_are_not_restricted(make_runner, target, acme_app):
    runner = make_runner(acme_app(permittedArgs=["id"], url="https://api.acme.test/orders/{{{id}}}"))
    await runner.run("acme.app.thing", args={"id": "a b@c:d"})
    assert target.requests[0].url.host == "api.acme.test"


async def test_log_helper_cannot_leak_the_secret(make_runner, target, secret):
    # pydantic-handlebars' {{log}} warns with rendered values; it is unregistered (warnings are errors).
    await make_runner().run(
        "ecommstore.app.store.refundOrder",
        org_id="org-1",
        body={"foo": "{{log authToken}}"},
        headers=AUTH,
        args={"store": "a"},
    )
    assert secret not in target.requests[0].content.decode()


# --- secrets ---


async def test_auth_token_resolves_per_org_in_headers_and_body(make_runner, target, secret):
    runner = make_runner()
    for org in ("org-1", "org-2"):
        await runner.run(
            "ecommstore.app.store.refundOrder",
            org_id=org,
            body={"foo": "token={{{authToken}}}"},
            headers={"X-Key": "{{authToken}}"},
            args={"store": "a"},
        )
    first, second = target.requests
    assert first.headers["x-key"] == secret
    assert sent_json(first) == {"foo": f"token={secret}"}
    assert second.headers["x-key"] == f"{secret}-two"


@pytest.mark.parametrize("path", ['/x/{{lookup this "authToken"}}', "/x/{{#with this}}{{authToken}}{{/with}}"])
async def test_the_secret_is_never_in_the_url_context(make_runner, target, acme_app, settings, path):
    # Indirect references get past the definition check (which refuses {{authToken}} in a URL); the URL is
    # still rendered without the secret.
    app = acme_app(url=f"https://api.acme.test{path}", appSettings={"authToken": {"key": "acme.default.token"}})
    settings.set("default", "acme.default.token", "SECRET-VALUE")
    await make_runner(app).run("acme.app.thing", headers={"X-Key": "{{authToken}}"})
    (request,) = target.requests
    assert request.url.path == "/x/"
    assert request.headers["x-key"] == "SECRET-VALUE"


async def test_missing_setting_refuses_the_run(make_runner, target):
    with pytest.raises(
        CommandError, match=re.escape("app setting 'ecommstore.default.authToken' is not set for org 'org-9'")
    ):
        await make_runner().run(
            "ecommstore.app.store.refundOrder",
            org_id="org-9",
            body={"foo": "x"},
            headers=AUTH,
            args={"store": "a"},
        )
    assert target.calls == 0


async def test_without_app_settings_auth_token_is_just_unknown(make_runner, target, acme_app):
    await make_runner(acme_app()).run("acme.app.thing", headers=AUTH)
    assert target.requests[0].headers["authorization"] == "Bearer "


async def test_secret_never_in_audit_errors_reprs_or_echoed_responses(make_runner, target, secret, settings):
    target.body = {"echo": f"you sent Bearer {secret}", "foo": secret}
    target.headers = {"X-Request-Id": f"req-{secret}", "Set-Cookie": f"s={secret}"}
    runner = make_runner()
    result = await runner.run(
        "ecommstore.app.store.refundOrder",
        org_id="org-1",
        body={"foo": "{{{authToken}}}"},
        headers=AUTH,
        args={"store": "a"},
    )
    assert target.requests[0].headers["authorization"] == f"Bearer {secret}"  # the target does get it
    assert result.body == {"echo": "you sent Bearer ***", "foo": "***"}
    assert result.headers == {"x-request-id": "req-***", "content-type": "application/json"}
    cached = await runner.run(
        "ecommstore.app.store.refundOrder",
        org_id="org-1",
        body={"foo": "{{{authToken}}}"},
        headers=AUTH,
        args={"store": "a"},
    )
    assert cached.source == "cache"
    assert (cached.body, cached.headers) == (result.body, result.headers)
    texts = [repr(result), result.model_dump_json(), repr(runner), repr(settings), repr(runner.cache)]

    # Errors after the secret was resolved: template errors, bad header values, failing targets, transports.
    failures = [
        {"headers": {"Authorization": "Bearer {{authToken}"}},
        {"headers": {"X-Bad": "{{{authToken}}}\n"}},
        {"headers": {"X-Bad": "{{#each this}}{{this}}{{/if}}"}},
        {"body": {"foo": "{{#with authToken}}"}},
        {"body": {"foo": 5, "extra": "{{authToken}}"}},
    ]
    for failure in failures:
        call = {"body": {"foo": "x"}, "headers": AUTH, "args": {"store": "a"}} | failure
        with pytest.raises(CommandError) as caught:
            await runner.run("ecommstore.app.store.refundOrder", org_id="org-1", **call)
        texts.append(str(caught.value))
        texts.append(repr(caught.value))
    target.status = 500
    target.body = {"error": f"bad token {secret}"}
    failed = await runner.run(
        "ecommstore.app.store.refundOrder",
        org_id="org-1",
        body={"foo": "new"},
        headers=AUTH,
        args={"store": "a"},
    )
    assert not failed.ok
    assert failed.body == {"error": "bad token ***"}
    texts.append(failed.model_dump_json())
    target.unreachable = True
    unreachable = await runner.run(
        "ecommstore.app.store.refundOrder",
        org_id="org-1",
        body={"foo": "n2"},
        headers=AUTH,
        args={"store": "a"},
    )
    texts.append(unreachable.model_dump_json())
    texts.extend(entry.model_dump_json() for entry in runner.audit.entries)
    texts.extend(repr(entry) for entry in runner.audit.entries)
    assert len(runner.audit.entries) == 2 + len(failures) + 2
    for text in texts:
        assert secret not in text
        assert secret[:12] not in text


async def test_settings_repr_and_delete(secret):
    settings = InMemoryAppSettings({"o": {"k.a.b": secret}})
    assert secret not in repr(settings)
    assert "k.a.b" in repr(settings)
    assert await settings.get_setting("o", "k.a.b") == secret
    settings.delete("o", "k.a.b")
    settings.delete("nope", "k.a.b")
    assert await settings.get_setting("o", "k.a.b") is None


# --- headers ---


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ({"Host": "evil.test"}, "is set by the runner"),
        ({"Content-Length": "1"}, "is set by the runner"),
        ({"Transfer-Encoding": "chunked"}, "is set by the runner"),
        ({"Bad Name": "x"}, "not a valid header name"),
        ({"": "x"}, "not a valid header name"),
        ({"X-A": 5}, "must be a string"),
        ({"X-A": "caf\u00e9"}, "printable ASCII"),
        ({"X-A": "{{{v}}}"}, "printable ASCII"),
    ],
)
async def test_invalid_headers_are_refused(make_runner, target, acme_app, headers, fragment):
    runner = make_runner(acme_app(permittedArgs=["v"]))
    with pytest.raises(CommandError, match=fragment):
        await runner.run("acme.app.thing", headers=headers, args={"v": "a\r\nX-Injected: 1"})
    assert target.calls == 0


async def test_caller_content_type_is_kept(make_runner, target, acme_app):
    runner = make_runner(acme_app())
    await runner.run("acme.app.thing", body={"a": 1}, headers={"Content-Type": "application/vnd.acme+json"})
    assert target.requests[0].headers["content-type"] == "application/vnd.acme+json"


async def test_get_without_body_sends_no_content(make_runner, target, acme_app):
    runner = make_runner(acme_app(httpMethod="get"))
    await runner.run("acme.app.thing")
    (request,) = target.requests
    assert request.method == "GET"
    assert request.content == b""
    assert "content-type" not in request.headers


@pytest.mark.parametrize("method", ["get", "post", "put", "patch", "delete"])
async def test_each_method_is_sent(make_runner, target, acme_app, method):
    await make_runner(acme_app(httpMethod=method)).run("acme.app.thing", body={"x": 1})
    assert target.requests[0].method == method.upper()


async def test_non_json_body_is_refused(make_runner, acme_app):
    runner = make_runner(acme_app())
    with pytest.raises(CommandError, match="body must be JSON"):
        await runner.run("acme.app.thing", body={"when": object()})
    with pytest.raises(CommandError, match="body must be JSON"):
        await runner.run("acme.app.thing", body={"x": float("nan")})


# --- results ---


async def test_upstream_error_without_cache_is_a_failure_result(make_runner, target, acme_app):
    target.status = 404
    target.body = {"errors": [{"title": "order not found"}]}
    runner = make_runner(acme_app(outputSchema={"type": "object", "properties": {}, "additionalProperties": False}))
    result = await runner.run("acme.app.thing")
    assert not result.ok
    assert result.status == 404
    assert result.error == "the command target answered 404"
    assert result.body == {"errors": [{"title": "order not found"}]}  # error bodies skip the outputSchema
    assert result.source == "live"
    assert result.fallback_active is False  # no cacheSeconds: no Cache Fallback Mode
    with pytest.raises(
        CommandError, match=re.escape("command 'acme.app.thing' failed: the command target answered 404")
    ):
        result.raise_for_error()


async def test_unreachable_target_is_a_failure_result(make_runner, target, acme_app):
    target.unreachable = True
    result = await make_runner(acme_app()).run("acme.app.thing")
    assert not result.ok
    assert result.status is None
    assert result.error == "could not reach the command target (ConnectError)"


async def test_success_result_and_kept_headers(make_runner, target, acme_app):
    target.headers = {"X-RateLimit-Remaining": "9", "Set-Cookie": "a=b", "ETag": '"1"', "Server": "x"}
    result = await make_runner(acme_app()).run("acme.app.thing")
    assert result.raise_for_error() is result
    assert result.headers == {"x-ratelimit-remaining": "9", "etag": '"1"', "content-type": "application/json"}
    assert result.to_json() == {
        "command": "acme.app.thing",
        "status": 200,
        "headers": result.headers,
        "body": {"foo": "live-1"},
        "source": "live",
        "cacheAgeSeconds": None,
        "fallbackActive": False,
        "error": None,
        "ok": True,
    }
    assert CommandResult.model_validate(result.to_json()) == result


@pytest.mark.parametrize(
    ("content", "headers", "expected"),
    [
        (b"plain text", {"Content-Type": "text/plain"}, "plain text"),
        (b"", {}, None),
        (b'{"a": 1}', {}, {"a": 1}),
        (b"{not json", {"Content-Type": "application/json"}, "{not json"),
    ],
)
async def test_response_bodies(make_runner, target, acme_app, content, headers, expected):
    target.body = content
    target.headers = headers
    assert (await make_runner(acme_app()).run("acme.app.thing")).body == expected


async def test_redirects_are_not_followed(make_runner, target, acme_app):
    target.status = 302
    target.headers = {"Location": "https://elsewhere.test/"}
    result = await make_runner(acme_app()).run("acme.app.thing")
    assert target.calls == 1
    assert result.ok
    assert result.status == 302
    assert result.headers["location"] == "https://elsewhere.test/"


# --- audit log ---


async def test_audit_entries_when_audit_logging_is_on(make_runner, target, clock):
    runner = make_runner()
    await runner.run(
        "ecommstore.app.store.refundOrder",
        org_id="org-1",
        body={"foo": "x"},
        headers=AUTH,
        args={"store": "acme"},
    )
    target.status = 503
    await runner.run(
        "ecommstore.app.store.refundOrder",
        org_id="org-1",
        body={"foo": "y"},
        headers=AUTH,
        args={"store": "acme"},
    )
    target.unreachable = True
    await runner.run(
        "ecommstore.app.store.refundOrder",
        org_id="org-1",
        body={"foo": "z"},
        headers=AUTH,
        args={"store": "acme"},
    )
    ok, upstream, transport = runner.audit.entries
    assert ok.org_id == "org-1"
    assert ok.command == "ecommstore.app.store.refundOrder"
    assert ok.args == {"store": "acme"}
    assert (ok.outcome, ok.status, ok.upstream_status, ok.source) == ("ok", 200, 200, "live")
    assert ok.timestamp.timestamp() == clock.now
    assert (upstream.outcome, upstream.status, upstream.upstream_status, upstream.source) == (
        "upstream_error",
        503,
        503,
        "live",
    )
    assert (transport.outcome, transport.status, transport.source) == ("transport_error", None, None)
    assert set(ok.model_dump(by_alias=True)) == {
        "orgId",
        "command",
        "args",
        "outcome",
        "status",
        "upstreamStatus",
        "source",
        "timestamp",
    }


async def test_no_audit_entries_when_audit_logging_is_off(make_runner, acme_app):
    runner = make_runner(acme_app(auditLogging=False))
    await runner.run("acme.app.thing")
    with pytest.raises(CommandError):
        await runner.run("acme.app.thing", args={"x": "1"})
    assert runner.audit.entries == []


# --- run request, facade, per-org registries ---


def test_run_request_accepts_url_args_alias():
    assert CommandRunRequest.model_validate({"urlArgs": {"store": "a"}}).args == {"store": "a"}
    assert CommandRunRequest.model_validate({"urlArgs": {"a": "1"}, "args": {"a": "1"}}).args == {"a": "1"}
    with pytest.raises(ValidationError, match="not both"):
        CommandRunRequest.model_validate({"urlArgs": {"a": "1"}, "args": {"a": "2"}})
    with pytest.raises(ValidationError):
        CommandRunRequest.model_validate({"argz": {}})
    empty = CommandRunRequest.model_validate({})
    assert (empty.body, empty.headers, empty.args) == (None, {}, {})


def test_command_run_path_quotes_the_name():
    assert command_run_path("ecommstore.app.store.refundOrder") == "/v1/commands/ecommstore.app.store.refundOrder/run"
    assert command_run_path("a/b c") == "/v1/commands/a%2Fb%20c/run"


def test_sync_facade(target, acme_app):
    runner = CommandRunner(registries=CommandRegistry([acme_app()]), transport=target.transport)
    sync = SyncCommandRunner(runner)
    assert sync.run("acme.app.thing", body={"a": 1}).status == 200
    assert sync.run("acme.app.thing").ok
    assert target.calls == 2
    assert "SyncCommandRunner(CommandRunner(" in repr(sync)


async def test_registry_provider_per_org(target, acme_app, seed_app):
    from connectors.kustomer.commands import CommandRegistries

    registries = CommandRegistries()
    registries("org-a").register(acme_app())
    runner = CommandRunner(registries=registries, transport=target.transport)
    assert (await runner.run("acme.app.thing", org_id="org-a")).ok
    with pytest.raises(CommandError, match="unknown command"):
        await runner.run("acme.app.thing", org_id="org-b")
    assert registries("org-a") is runner.registry_for("org-a")
    assert "org-a" in repr(registries)
