"""``newsletter api-key create|list|revoke``: the key is printed once, kept only as a hash."""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any

import pytest
from click.testing import CliRunner, Result
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from newsletter.api_keys import authenticate, hash_key
from newsletter.app import App
from newsletter.cli import main
from newsletter.models import ApiKey
from newsletter.settings import load_settings
from newsletter.web.app import create_web_app
from tests.cli_output import after_context
from tests.conftest import NOW


@pytest.fixture
def run(cli_env: dict[str, Any]) -> Any:
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(main, list(args), env=cli_env)

    return invoke


@pytest.fixture
def app(cli_env: dict[str, Any]) -> Any:
    application = App(load_settings(cli_env))
    yield application
    application.close()


def test_create_prints_a_url_safe_key_once_and_stores_only_its_hash(
    run: Any, app: App, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    result = run("api-key", "create", "shop-checkout")
    assert result.exit_code == 0, result.output
    secret = result.stdout.strip()
    assert re.fullmatch(r"nl_[A-Za-z0-9_-]{43}", secret)
    assert after_context(result.stderr) == (
        "created write key 'shop-checkout'; store it now, it cannot be shown again\n"
    )
    with app.engine.connect() as conn:
        stored = conn.execute(text("SELECT * FROM api_keys")).mappings().one()
        dump = repr(conn.execute(text("SELECT * FROM api_keys")).all())
    assert stored["key_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in dump
    assert secret[3:] not in dump
    assert stored["prefix"] == secret[:10]
    assert secret not in caplog.text
    listed = run("api-key", "list", "--format", "json")
    assert secret not in listed.output  # stdout and stderr
    assert secret[10:] not in listed.output
    with app.sessions() as session:
        caller = authenticate(session, secret, now=NOW)
    assert caller is not None
    assert caller.name == "shop-checkout"


def test_list_and_revoke(run: Any, app: App) -> None:
    read = run("api-key", "create", "dashboard", "--scope", "read").stdout.strip()
    run("api-key", "create", "shop")
    listed = run("api-key", "list", "--format", "csv")
    rows = [line.split(",") for line in listed.stdout.splitlines()]
    assert rows[0] == ["name", "scope", "prefix", "created", "last_used", "status"]
    assert [(r[0], r[1], r[2], r[5]) for r in rows[1:]] == [
        ("dashboard", "read", read[:10] + "...", "active"),
        ("shop", "write", rows[2][2], "active"),
    ]
    revoked = run("api-key", "revoke", "dashboard")
    assert revoked.exit_code == 0
    assert revoked.stdout == f"revoked key 'dashboard' ({read[:10]}...)\n"
    client = TestClient(create_web_app(app))
    answer = client.get("/api/v1/sequences", headers={"Authorization": f"Bearer {read}"})
    assert answer.status_code == 401
    assert "revoked" in run("api-key", "list").output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("create", "bad name"), "Error: bad key name 'bad name': use letters, digits"),
        (("revoke", "nope"), "Error: no API key named 'nope'; run `newsletter api-key list`"),
    ],
)
def test_errors_are_one_line(run: Any, args: tuple[str, ...], message: str) -> None:
    result = run("api-key", *args)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert after_context(result.stderr).startswith(message)
    assert after_context(result.stderr).count("\n") == 1


def test_names_are_unique_and_scopes_checked(run: Any, app: App) -> None:
    run("api-key", "create", "shop")
    again = run("api-key", "create", "shop")
    assert again.exit_code == 1
    assert "an API key named 'shop' exists already" in again.stderr
    bad_scope = run("api-key", "create", "x", "--scope", "admin")
    assert bad_scope.exit_code == 2
    with app.sessions() as session:
        assert session.scalars(select(ApiKey.name)).all() == ["shop"]


def test_a_wrong_key_of_the_right_shape_is_refused(app: App) -> None:
    with app.sessions() as session:
        assert authenticate(session, "nl_" + "A" * 43, now=NOW) is None
        assert authenticate(session, hash_key("x"), now=NOW) is None
