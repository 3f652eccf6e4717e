"""``connectors commands validate|run`` through Typer's CliRunner, against a local (mock) target."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from connectors.cli.commands import app as default_app
from connectors.cli.commands import build_app

SETTING = "ecommstore.default.authToken"


@pytest.fixture
def cli(target):
    return build_app(transport=target.transport)


@pytest.fixture
def invoke(cli):
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(cli, [str(arg) for arg in args])

    return invoke


@pytest.fixture
def app_file(tmp_path, seed_app):
    path = tmp_path / "app.json"
    path.write_text(json.dumps(seed_app))
    return path


def seed_run(app_file, secret, *extra):
    return (
        "run",
        app_file,
        "ecommstore.store.refundOrder",
        "--arg",
        "store=dunder-mifflin",
        "--body",
        '{"foo": "bar"}',
        "-H",
        "Authorization: Bearer {{authToken}}",
        "--setting",
        f"{SETTING}={secret}",
        *extra,
    )


def test_validate_the_seed_example(invoke, app_file):
    result = invoke("validate", app_file)
    assert result.exit_code == 0, result.output
    assert "app 'ecommstore' is valid (1 command)" in result.stdout
    assert "post" in result.stdout


def test_validate_json(invoke, app_file):
    result = invoke("validate", app_file, "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {
        "valid": True,
        "app": "ecommstore",
        "commands": ["ecommstore.app.store.refundOrder"],
    }


def test_validate_reports_every_problem(invoke, tmp_path, seed_app):
    seed_app["commands"][0]["cacheSeconds"] = 5
    seed_app["commands"][0]["httpMethod"] = "POST"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(seed_app))
    result = invoke("validate", path)
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[-1].startswith(f"error: {path}: commands/0/httpMethod: ")
    assert lines[-1].endswith("(and 1 more, listed above)")
    assert lines[0].startswith("  commands/0/cacheSeconds: ")
    as_json = invoke("validate", path, "--json")
    assert as_json.exit_code == 1
    assert [error["path"] for error in json.loads(as_json.stdout)["errors"]] == [
        "commands/0/httpMethod",
        "commands/0/cacheSeconds",
    ]


def test_validate_an_app_without_commands(invoke, tmp_path):
    path = tmp_path / "empty.json"
    path.write_text('{"app": "acme"}')
    result = invoke("validate", path)
    assert result.exit_code == 0
    assert "(0 commands)" in result.stdout


@pytest.mark.parametrize(
    ("content", "fragment"),
    [(None, "cannot read"), ("{nope", "is not valid JSON")],
)
def test_validate_unreadable_files(invoke, tmp_path, content, fragment):
    path = tmp_path / "app.json"
    if content is not None:
        path.write_text(content)
    result = invoke("validate", path)
    assert result.exit_code == 1
    assert len(result.stderr.splitlines()) == 1
    assert fragment in result.stderr


def test_run_the_seed_example(invoke, app_file, target, secret):
    target.body = {"foo": 1, "status": "refunded"}
    result = invoke(*seed_run(app_file, secret))
    assert result.exit_code == 0, result.output
    (request,) = target.requests
    assert str(request.url) == "https://dunder-mifflin.example-ecommstore.com/orders"
    assert request.headers["authorization"] == f"Bearer {secret}"
    assert json.loads(request.content) == {"foo": "bar"}
    assert "ecommstore.app.store.refundOrder: 200 (live)" in result.stdout
    assert '"refunded"' in result.stdout
    assert secret not in result.output


def test_run_json(invoke, app_file, secret):
    result = invoke(*seed_run(app_file, secret, "--json"))
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert (document["status"], document["source"], document["ok"], document["body"]) == (
        200,
        "live",
        True,
        {"foo": "live-1"},
    )


def test_run_text_body(invoke, app_file, target, secret):
    target.body = b"[ok] refunded"
    target.headers = {"Content-Type": "text/plain"}
    app = json.loads(app_file.read_text())
    del app["commands"][0]["outputSchema"]
    app_file.write_text(json.dumps(app))
    result = invoke(*seed_run(app_file, secret))
    assert result.exit_code == 0
    assert "[ok] refunded" in result.stdout


def test_run_upstream_failure(invoke, app_file, target, secret):
    target.status = 502
    target.body = {"error": f"bad gateway for {secret}"}
    result = invoke(*seed_run(app_file, secret))
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ecommstore.app.store.refundOrder: the command target answered 502: ")
    assert len(result.stderr.splitlines()) == 1
    assert secret not in result.output
    as_json = invoke(*seed_run(app_file, secret, "--json"))
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout)["ok"] is False
    assert secret not in as_json.output


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (("--arg", "other=1"), "args not in permittedArgs: other"),
        (("--arg", "novalue"), "--arg expects NAME=VALUE"),
        (("--setting", "ecommstore.default.authToken"), "--setting expects NAME=VALUE"),
        (("-H", "NoColon"), "--header expects 'Name: value'"),
        (("--body", "{nope"), "--body is not valid JSON"),
    ],
)
def test_run_refusals_are_one_error_line(invoke, app_file, target, secret, extra, fragment):
    result = invoke(*seed_run(app_file, secret, *extra))
    assert result.exit_code == 1
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("error: ")
    assert fragment in result.stderr
    assert target.calls == 0
    assert secret not in result.output


def test_run_without_the_setting(invoke, app_file, target):
    result = invoke("run", app_file, "ecommstore.app.store.refundOrder", "--body", '{"foo": "x"}', "--json")
    assert result.exit_code == 1
    assert (
        "app setting 'ecommstore.default.authToken' is not set for org 'default'" in json.loads(result.stdout)["error"]
    )


def test_run_unknown_command_and_invalid_definition(invoke, app_file, tmp_path, secret):
    unknown = invoke("run", app_file, "ecommstore.app.nope")
    assert unknown.exit_code == 1
    assert unknown.stderr == "error: unknown command 'ecommstore.app.nope'\n"
    bad = tmp_path / "bad.json"
    bad.write_text('{"app": "x", "commands": [{"name": "x.app.y", "url": "https://x.test", "httpMethod": "POST"}]}')
    invalid = invoke("run", bad, "x.app.y")
    assert invalid.exit_code == 1
    assert "commands/0/httpMethod" in invalid.stderr
    assert "connectors commands validate" in invalid.stderr


def test_run_unreachable_target_uses_the_network_transport_by_default(tmp_path, acme_app):
    # The module-level app uses the real network; an unroutable host fails fast and cleanly.
    path = tmp_path / "app.json"
    path.write_text(json.dumps(acme_app(url="http://127.0.0.1:9/never", httpMethod="get")))
    result = CliRunner().invoke(default_app, ["run", str(path), "acme.app.thing", "--timeout", "2"])
    assert result.exit_code == 1
    assert result.stderr == "error: acme.app.thing: could not reach the command target (ConnectError)\n"


def test_org_option_selects_the_settings(invoke, app_file, target, secret):
    result = invoke(*seed_run(app_file, secret, "--org", "org-7"))
    assert result.exit_code == 0
    assert target.requests[0].headers["authorization"] == f"Bearer {secret}"
