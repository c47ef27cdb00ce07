"""``newsletter webhook ...`` through click's CliRunner, with exact output; every bad
input is one line, exit 1, and writes nothing."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from newsletter.app import App
from newsletter.cli import main
from newsletter.models import WebhookEndpoint
from newsletter.settings import load_settings
from tests.cli_output import after_context
from tests.conftest import NOW
from tests.webhook_receiver import Behaviour, Receiver

Run = Callable[..., Result]
STAMP = NOW.isoformat()


@pytest.fixture
def env(cli_env: dict[str, Any]) -> dict[str, Any]:
    return {**cli_env, "NEWSLETTER_WEBHOOK_ALLOW_PRIVATE": "true"}


@pytest.fixture
def run(env: dict[str, Any]) -> Run:
    runner = CliRunner()

    def invoke(*args: str, code: int = 0, environ: dict[str, Any] | None = None) -> Result:
        result = runner.invoke(main, list(args), env=environ or env)
        assert result.exit_code == code, (result.output, result.exception)
        return result

    return invoke


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


def _endpoints(env: dict[str, Any]) -> int:
    app = App(load_settings(env))
    try:
        with app.sessions() as session:
            return int(session.scalar(select(func.count()).select_from(WebhookEndpoint)) or 0)
    finally:
        app.close()


def test_add_prints_the_secret_once_then_list_test_deliveries_rotate_remove(
    run: Run, receiver: Receiver
) -> None:
    added = run(
        "webhook",
        "add",
        receiver.url,
        "--event",
        "subscriber.created",
        "--event",
        "email.sent",
        "--description",
        "CRM",
        "--now",
        STAMP,
    )
    lines = added.stdout.splitlines()
    assert lines[0] == f"webhook 1 added: {receiver.url}"
    assert lines[1] == "events: subscriber.created, email.sent"
    assert re.fullmatch(r"secret: whsec_[A-Za-z0-9_-]{43}", lines[2])
    assert lines[3].startswith("keep it now: it is not shown again.")
    secret = lines[2].removeprefix("secret: ")

    listed = run("webhook", "list", "--format", "json", "--now", STAMP)
    assert listed.stdout == (
        '[{"id": 1, "state": "enabled", "url": "' + receiver.url + '", "events": '
        '["subscriber.created", "email.sent"], "pending": 0, "failed": 0, '
        '"description": "CRM"}]\n'
    )
    assert secret not in run("webhook", "list").output

    tested = run("webhook", "test", "1", "--now", STAMP)
    [ping] = receiver.received
    assert tested.stdout == f"ping {ping.payload['id']} delivered to webhook 1: HTTP 200\n"
    shown = run("webhook", "deliveries", "1", "--format", "csv")
    assert shown.stdout == (
        "id,webhook,event,type,status,attempts,last,next_attempt_at,created_at\n"
        f"1,1,{ping.payload['id']},ping,delivered,1,HTTP 200,,{NOW.isoformat(timespec='seconds')}\n"
    )

    rotated = run("webhook", "rotate-secret", "1", "--now", STAMP)
    lines = rotated.stdout.splitlines()
    assert lines[0] == (
        "webhook 1: new secret; the old one stays valid until 2026-11-25T09:00:00+00:00"
    )
    new = lines[1].removeprefix("secret: ")
    assert new != secret
    assert new.startswith("whsec_")
    assert "enabled (rotating)" in run("webhook", "list", "--now", STAMP).output
    run("webhook", "test", "1", "--now", STAMP)
    header = receiver.received[-1].headers["Newsletter-Signature"]
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64},v1=[0-9a-f]{64}", header)

    removed = run("webhook", "remove", "1")
    assert removed.stdout == f"webhook 1 removed ({receiver.url}); 0 pending events dropped\n"
    assert run("webhook", "list", "--format", "json").stdout == "[]\n"


def test_a_failed_ping_exits_1_with_the_reason(run: Run, receiver: Receiver) -> None:
    run("webhook", "add", receiver.url, "--event", "*")
    receiver.behaviour = Behaviour(status=503)
    result = run("webhook", "test", "1", code=1)
    event = receiver.received[0].payload["id"]
    assert after_context(result.stderr) == f"Error: ping {event} to webhook 1 failed: HTTP 503\n"
    failed = run("webhook", "deliveries", "--status", "failed", "--format", "json")
    assert '"status": "failed"' in failed.stdout
    assert '"last": "HTTP 503"' in failed.stdout
    receiver.behaviour = Behaviour()
    retried = run("webhook", "retry", "1")
    assert retried.stdout == f"delivery 1 (ping {event}) queued again for webhook 1\n"
    assert run("tick", "--job", "webhooks").stdout.startswith('webhooks: {"delivered": 1')
    assert receiver.ids() == [event, event]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["ftp://shop.example/x", "--event", "*"],
            "Error: webhook URL 'ftp://shop.example/x' refused: only http:// and https:// "
            "URLs are allowed\n",
            id="scheme",
        ),
        pytest.param(
            ["https://user:pw@shop.example/x", "--event", "*"],
            "Error: webhook URL 'shop.example/x' refused: credentials in the URL are not "
            "allowed; receivers check the Newsletter-Signature header instead\n",
            id="credentials",
        ),
        pytest.param(
            ["https:///nohost", "--event", "*"],
            "Error: webhook URL 'https:///nohost' refused: the URL has no host\n",
            id="no-host",
        ),
        pytest.param(
            ["https://shop.example/x", "--event", "order.paid"],
            "Error: unknown event 'order.paid'; choose from subscriber.created, "
            "subscriber.confirmed, subscriber.unsubscribed, subscriber.bounced, "
            "subscriber.complained, subscriber.forgotten, email.sent, email.failed, "
            "sequence.completed, sequence.exited, campaign.started, campaign.finished "
            "(or '*' for all)\n",
            id="unknown-event",
        ),
        pytest.param(
            ["https://shop.example/x", "--event", "*", "--description", "x" * 501],
            "Error: the description is longer than 500 characters\n",
            id="long-description",
        ),
    ],
)
def test_bad_input_to_add_is_one_line_and_writes_nothing(
    run: Run, env: dict[str, Any], args: list[str], message: str
) -> None:
    result = run("webhook", "add", *args, code=1)
    assert (result.stdout, after_context(result.stderr)) == ("", message)
    assert _endpoints(env) == 0


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/x",
        "http://localhost/x",
        "http://[::1]/x",
        "http://169.254.169.254/latest/meta-data",
        "http://10.1.2.3/x",
        "http://192.168.0.10/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://0.0.0.0/x",
    ],
)
def test_internal_addresses_are_refused_by_default(
    run: Run, cli_env: dict[str, Any], url: str
) -> None:
    result = run("webhook", "add", url, "--event", "*", code=1, environ=cli_env)
    errors = after_context(result.stderr)
    assert "resolves to a loopback, link-local or private address" in errors
    assert "NEWSLETTER_WEBHOOK_ALLOW_PRIVATE=true" in errors
    assert len(errors.splitlines()) == 1
    assert result.stdout == ""
    assert _endpoints(cli_env) == 0


def test_unknown_ids_are_one_line_errors(run: Run) -> None:
    assert after_context(run("webhook", "remove", "7", code=1).stderr) == (
        "Error: no webhook with id 7; run `newsletter webhook list`\n"
    )
    assert after_context(run("webhook", "test", "7", code=1).stderr) == (
        "Error: no webhook with id 7; run `newsletter webhook list`\n"
    )
    assert after_context(run("webhook", "retry", "9", code=1).stderr) == (
        "Error: no webhook delivery with id 9; run `newsletter webhook deliveries`\n"
    )
    assert after_context(run("webhook", "deliveries", "7", code=1).stderr).startswith(
        "Error: no webhook"
    )
    assert after_context(run("webhook", "rotate-secret", "7", code=1).stderr).startswith(
        "Error: no webhook"
    )
    assert after_context(run("webhook", "enable", "7", code=1).stderr).startswith(
        "Error: no webhook"
    )
    assert run("webhook", "add", "https://x.example", code=2).exit_code == 2  # no --event
