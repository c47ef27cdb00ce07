"""`newsletter sources list|test` and `content check` over sources.yaml, with CliRunner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, func, select

from newsletter.cli import main
from newsletter.models import ConsentEvent, SourceEvent, Subscriber
from tests.source_senders import DATA

SOURCES = """\
sources:
  shop:
    preset: shopify
    secret_env: SRC_CLI_SHOP
    opt_in: single_if_consent
    consent_text: "Email me with news and offers"
    tags: [customers]
  forms:
    preset: tally
    secret_env: SRC_CLI_FORMS
"""


@pytest.fixture
def env(cli_env: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "sources.yaml"
    path.write_text(SOURCES)
    for key, value in (cli_env | {"NEWSLETTER_SOURCES_FILE": str(path)}).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SRC_CLI_SHOP", "new,old")
    monkeypatch.delenv("SRC_CLI_FORMS", raising=False)
    return path


def test_sources_list_shows_routes_opt_in_and_missing_secrets(env: Path) -> None:
    result = CliRunner().invoke(main, ["sources", "list"])
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "NAME   ROUTE             PRESET   OPT_IN             TAGS       SECRET\n"
        "shop   /subscribe/shop   shopify  single_if_consent  customers  set\n"
        "forms  /subscribe/forms  tally    double                        "
        "missing: set SRC_CLI_FORMS\n"
    )


def test_sources_test_shows_the_mapping_and_the_consent_decision_and_writes_nothing(
    env: Path, db_url: str
) -> None:
    result = CliRunner().invoke(
        main,
        [
            "sources",
            "test",
            "shop",
            str(DATA / "shopify.json"),
            "--header",
            "X-Shopify-Topic: customers/create",
            "--header",
            "X-Shopify-Webhook-Id: b54557e4",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "source": "shop",
        "action": "subscribe",
        "reason": "single opt-in: the sender reports the subscriber's marketing consent",
        "fields": {"email": "bob@biller.com", "first_name": "Bob", "timezone": None, "ip": None},
        "event_id": "b54557e4",
        "opt_in": "single",
        "consent_text": "Email me with news and offers",
        "tags": ["customers"],
    }
    engine = create_engine(db_url)
    with engine.connect() as conn:
        for model in (Subscriber, ConsentEvent, SourceEvent):
            assert conn.scalar(select(func.count()).select_from(model)) == 0
    engine.dispose()


def test_sources_test_shows_why_a_delivery_would_be_ignored(env: Path, tmp_path: Path) -> None:
    payload = json.loads((DATA / "shopify.json").read_text())
    payload["email_marketing_consent"]["state"] = "not_subscribed"
    sample = tmp_path / "no-consent.json"
    sample.write_text(json.dumps(payload))
    result = CliRunner().invoke(
        main,
        ["sources", "test", "shop", str(sample), "--header", "X-Shopify-Topic:customers/create"],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "source": "shop",
        "action": "ignore",
        "reason": "the customer's email_marketing_consent.state is 'not_subscribed', "
        "not 'subscribed'",
    }


def test_sources_test_refuses_an_unknown_source_and_a_broken_file(
    env: Path, tmp_path: Path
) -> None:
    unknown = CliRunner().invoke(main, ["sources", "test", "nope", str(DATA / "tally.json")])
    assert unknown.exit_code == 1
    assert "no source 'nope'" in unknown.stderr
    broken = tmp_path / "broken.json"
    broken.write_text('{"eventType": ')
    result = CliRunner().invoke(main, ["sources", "test", "forms", str(broken)])
    assert result.exit_code == 1
    assert "the sender would get 400" in result.stderr
    bad_header = CliRunner().invoke(
        main, ["sources", "test", "forms", str(DATA / "tally.json"), "--header", "nocolon"]
    )
    assert bad_header.exit_code == 2


def test_content_check_reports_a_bad_sources_file_with_its_line(env: Path) -> None:
    env.write_text(
        SOURCES + "  broken:\n    preset: stripe\n    secret_env: X\n    opt_in: single\n"
    )
    result = CliRunner().invoke(main, ["content", "check"])
    assert result.exit_code == 1
    assert f"{env}:14: broken: opt_in must be 'double' or 'single_if_consent', got 'single'" in (
        result.output
    )


def test_content_check_counts_the_sources(env: Path) -> None:
    result = CliRunner().invoke(main, ["content", "check"])
    assert result.exit_code == 0, result.output
    assert ", and 2 form sources; every item renders" in result.stdout


def test_the_shipped_sources_file_is_valid() -> None:
    from newsletter.sources.loading import read_sources

    sources, problems = read_sources(Path(__file__).resolve().parent.parent / "sources.yaml")
    assert problems == []
    assert set(sources) == {"tally", "shop", "checkout"}


def test_sources_list_says_what_it_reads_and_keeps_no_secret_key(
    env: Path, monkeypatch: pytest.MonkeyPatch, cli_env: dict[str, Any]
) -> None:
    """Read-only: the context line on stderr, and no secret key is generated in var/."""
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY")
    result = CliRunner().invoke(main, ["sources", "list"])
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        f"using database {cli_env['NEWSLETTER_DATABASE_URL']}, content "
        f"{cli_env['NEWSLETTER_CONTENT_DIR']}\n"
    )
    assert not (Path(cli_env["NEWSLETTER_VAR_DIR"]) / "secret_key").exists()
