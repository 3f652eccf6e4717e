"""``connectors serve``: configuration rules, the banner, log redaction, and the README's first command."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from connectors.cli import app as cli
from connectors.errors import ConfigurationError
from connectors.server import ServerConfig
from connectors.server.run import RedactQueryFilter, banner, log_config, redact_query, serve

from .conftest import free_socket, serve_env, serve_process


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(__import__("os").environ):
        if name.startswith(("KUSTOMER_", "CONNECTORS_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CONNECTORS_HOME", str(tmp_path))


def test_redact_query() -> None:
    assert redact_query("/connect?session=cs1.abc.def&operations=x") == "/connect?session=***&operations=x"
    assert redact_query("/oauth/callback?code=abc&state=xyz") == "/oauth/callback?code=***&state=***"
    assert redact_query("/x?apiKey=1&api_key=2&key=3&keep=4") == "/x?apiKey=***&api_key=***&key=***&keep=4"
    assert redact_query("/resources/genericContact?limit=2") == "/resources/genericContact?limit=2"
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        "",
        0,
        '%s - "%s %s HTTP/%s" %d',
        ("1.2.3.4:5", "GET", "/connect?session=cs1.x.y", "1.1", 303),
        None,
    )
    assert RedactQueryFilter().filter(record)
    assert "cs1.x.y" not in record.getMessage() and "session=***" in record.getMessage()
    config = log_config()
    assert config["handlers"]["access"]["filters"] == ["redact_query"]


@pytest.mark.usefixtures("clean_env")
def test_configuration_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="one worker"):
        serve(workers=2)
    with pytest.raises(ConfigurationError, match="at least 1"):
        serve(workers=0)
    monkeypatch.setenv("KUSTOMER_BASE_URL", "http://127.0.0.1:9")
    with pytest.raises(ConfigurationError, match="CONNECTORS_OPERATOR_KEY"):
        serve()
    monkeypatch.setenv("CONNECTORS_OPERATOR_KEY", "x" * 32)
    with pytest.raises(ConfigurationError, match="CONNECTORS_REDIS_URL"):
        serve(workers=2)
    monkeypatch.setenv("CONNECTORS_REDIS_URL", "redis://127.0.0.1:6379/0")
    with pytest.raises(ConfigurationError, match="CONNECTORS_DATABASE_URL"):
        serve(workers=2)
    from connectors.server import create_app
    from connectors.settings import Settings

    with pytest.raises(ConfigurationError, match="at least 16"):
        create_app(settings=Settings(kustomer={"base_url": "http://x"}), operator_key="short")


def test_server_config_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError):
        ServerConfig(max_body_bytes=0)
    with pytest.raises(ConfigurationError):
        ServerConfig(session_ttl_seconds=10, session_max_ttl_seconds=5)
    with pytest.raises(ConfigurationError):
        ServerConfig(return_origins=("https://x.example/path",))
    monkeypatch.setenv("CONNECTORS_MAX_BODY_BYTES", "2048")
    monkeypatch.setenv("CONNECTORS_RETURN_ORIGINS", "https://app.example, https://b.example/")
    monkeypatch.setenv("CONNECTORS_ALLOW_HTTP_SUBSCRIBERS", "true")
    config = ServerConfig.from_env()
    assert config.max_body_bytes == 2048
    assert config.return_origins == ("https://app.example", "https://b.example")
    assert config.allow_http_subscribers is True
    monkeypatch.setenv("CONNECTORS_MAX_BODY_BYTES", "lots")
    with pytest.raises(ConfigurationError, match="CONNECTORS_MAX_BODY_BYTES"):
        ServerConfig.from_env()


def test_cli_serve_help_and_errors(clean_env: None) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["serve", "--help"])
    assert result.exit_code == 0 and "--workers" in result.output
    result = runner.invoke(cli, ["serve", "--workers", "3"])
    assert result.exit_code == 1
    assert "one worker" in result.output


def test_banner() -> None:
    from types import SimpleNamespace

    state = SimpleNamespace(
        public_url="http://localhost:8000",
        embedded=None,
        config=ServerConfig(loopback_owner="demo"),
        operator_key="k" * 20,
    )
    out = io.StringIO()
    banner(state, generated_key="generated-key-123", out=out)  # type: ignore[arg-type]
    text = out.getvalue()
    assert "http://localhost:8000/connect" in text and "http://localhost:8000/docs" in text
    assert "curl http://localhost:8000/resources/genericContact" in text
    assert "generated-key-123" in text
    out = io.StringIO()
    banner(state, generated_key=None, out=out)  # type: ignore[arg-type]
    assert "k" * 20 not in out.getvalue() and "$CONNECTORS_OPERATOR_KEY" in out.getvalue()


@pytest.mark.http
@pytest.mark.slow
def test_readme_first_command_serves_the_demo(tmp_path: Path) -> None:
    """``connectors serve`` on a clean machine, then ``curl localhost:8000/resources/genericContact``."""
    sock, port = free_socket()
    sock.close()
    env = serve_env(CONNECTORS_HOME=str(tmp_path / ".connectors"))
    url = f"http://localhost:{port}"
    with serve_process(["--port", str(port)], env, tmp_path, url):
        r = httpx.get(f"{url}/resources/genericContact")
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        assert len(data) == 100 and r.json()["next"]
        assert {"firstName", "lastName", "email"} <= set(data[0]["fields"])
        r = httpx.get(f"{url}/resources/crmOpportunity")
        assert len(r.json()["data"]) == 12
        assert httpx.get(f"{url}/connect").status_code == 200
        r = httpx.get(f"{url}/connect?session=cs1.secret-looking.value")
        assert r.status_code == 401
    log = (tmp_path / "serve.log").read_text()
    assert f"Connect page: {url}/connect" in log
    assert f"curl {url}/resources/genericContact" in log
    assert "operator key (generated for this run)" in log
    assert "cs1.secret-looking.value" not in log and "session=***" in log
    assert (tmp_path / ".connectors" / "connectors.db").exists()
