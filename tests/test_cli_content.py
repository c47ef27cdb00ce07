"""`newsletter content list|check` and `newsletter preview`, through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from content_fixtures import ADDRESS, ROOT, TIP, build_library, use_library

from newsletter.cli.content import content, preview
from tests.cli_output import after_context


@pytest.fixture
def cli() -> click.Group:
    group = click.Group("newsletter")
    group.add_command(content)
    group.add_command(preview)
    return group


@pytest.fixture
def library_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = build_library(tmp_path)
    use_library(monkeypatch, root)
    return root


def test_check_passes_on_the_shipped_library(
    cli: click.Group, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The library we ship is clean: every file parses and every item renders."""
    use_library(monkeypatch, ROOT)
    result = CliRunner().invoke(cli, ["content", "check"])
    assert result.exit_code == 0, result.output
    *warnings, last = result.stdout.splitlines()
    assert len(warnings) == 4  # the example testimonials (tests/test_example_content.py)
    assert last.startswith("OK: 27 items, 2 sequences, 6 templates and 8 cron jobs")


def test_check_passes_on_a_small_library(cli: click.Group, library_root: Path) -> None:
    result = CliRunner().invoke(cli, ["content", "check"])
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "OK: 3 items, 1 sequence, 6 templates and 8 cron jobs checked; every item renders\n"
    )


BROKEN = [
    pytest.param(
        "content/tips/meet-your-ql.md",
        '---\nsubject: "Meet your QL\npreheader: [oops\n---\nBody\n',
        "content/tips/meet-your-ql.md:4: invalid YAML: ",
        id="bad-yaml",
    ),
    pytest.param(
        "content/tips/meet-your-ql.md",
        TIP.replace("tags: [ql]", "tags: [ql]\ncolour: red"),
        "content/tips/meet-your-ql.md:5: unknown front-matter key 'colour'; allowed keys: ",
        id="unknown-key",
    ),
    pytest.param(
        "content/tips/meet-your-ql.md",
        "---\npreheader: Hello\n---\nBody\n",
        "content/tips/meet-your-ql.md:2: missing subject: add 'subject: ...'",
        id="missing-subject",
    ),
    pytest.param(
        "content/tips/meet-your-ql.md",
        TIP.replace("tags: [ql]", "template: fancy"),
        "content/tips/meet-your-ql.md:4: unknown template 'fancy': no fancy.html and fancy.txt",
        id="unknown-template",
    ),
    pytest.param(
        "content/tips/meet-your-ql.md",
        TIP + "\nYour nickname: {{ subscriber.nickname }}\n",
        "content/tips/meet-your-ql.md:10: tips/meet-your-ql: undefined variable: "
        "'newsletter.content.model.SubscriberContext object' has no attribute 'nickname'",
        id="undefined-variable",
    ),
    pytest.param(
        "content/tips/meet-your-ql.md",
        TIP.replace("The muscle behind most low back pain.", '"{{ shop_name }} tips"'),
        "content/tips/meet-your-ql.md:3: tips/meet-your-ql: undefined variable: "
        "'shop_name' is undefined",
        id="undefined-in-preheader",
    ),
    pytest.param(
        "content/tips/meet-your-ql.md",
        TIP.replace("preheader: The", "preheader: {{ shop_name }} The"),
        "content/tips/meet-your-ql.md:3: invalid YAML: expected <block end>, but found "
        "'<scalar>'; quote values that start with {{ or {%",
        id="unquoted-jinja-in-yaml",
    ),
    pytest.param(
        "content/tips/meet-your-ql.md",
        TIP + "\n{% if subscriber.first_name %}unclosed\n",
        "content/tips/meet-your-ql.md:10: template syntax error: Unexpected end of template.",
        id="jinja-syntax",
    ),
    pytest.param(
        "content/sequences/basics.yaml",
        "name: basics\nenroll: on_confirm\nsend_window: '08:00-11:00'\nsteps:\n"
        "  - send: system/welcome\n    after: 0d\n  - send: tips/missing\n    after: 2d\n",
        "content/sequences/basics.yaml:7: step 2 sends 'tips/missing', which is not in the "
        "content library (expected content/tips/missing.md)",
        id="sequence-missing-item",
    ),
    pytest.param(
        "content/sequences/basics.yaml",
        "name: basics\nenroll: on_confirm\nsend_window: '08:00-11:00'\nsteps:\n"
        "  - send: system/welcome\n    after: 3 days\n",
        "content/sequences/basics.yaml:6: bad delay '3 days': write a number and a unit",
        id="bad-delay",
    ),
    pytest.param(
        "content/sequences/basics.yaml",
        "name: basics\nsend_window: '11:00-08:00'\nsteps:\n  - send: system/welcome\n"
        "    after: 0d\n",
        "content/sequences/basics.yaml:2: bad send_window '11:00-08:00': the window must end",
        id="bad-window",
    ),
    pytest.param(
        "content/sequences/basics.yaml",
        "name: basics\nsend_window: '08:00-11:00'\nrepeat: true\nsteps: []\n",
        "content/sequences/basics.yaml:3: unknown key 'repeat'; allowed keys: ",
        id="sequence-unknown-key",
    ),
    pytest.param(
        "cron.yaml",
        "jobs:\n  plan-drips:\n    cron: '* * * * *'\n  deliver:\n    cron: '61 * * * *'\n",
        "cron.yaml:5: bad cron expression '61 * * * *' for job 'deliver': ",
        id="bad-cron",
    ),
    pytest.param(
        "cron.yaml",
        "jobs:\n  plan-drips:\n    cron: '* * * * *'\n  send-everything:\n    cron: '* * * * *'\n",
        "cron.yaml:4: unknown job 'send-everything'; known jobs: plan-drips, plan-campaigns, ",
        id="unknown-cron-job",
    ),
    pytest.param(
        "content/tips/long.md",
        "---\nsubject: This subject line goes on and on well past what any inbox shows\n"
        "preheader: x\n---\nBody\n",
        "content/tips/long.md:2: subject is 63 characters when rendered; keep it under 60",
        id="long-subject",
    ),
    pytest.param(
        "content/tips/meet-your-ql.md",
        TIP + "\n![](https://shop.example/ql.png)\n",
        "content/tips/meet-your-ql.md:10: an image has no alt text",
        id="image-without-alt",
    ),
    pytest.param(
        "templates/emails/tip.html",
        '{% extends "base.html" %}\n{% block content %}\n<h1>{{ subject }</h1>\n{% endblock %}\n',
        "templates/emails/tip.html:3: template syntax error: ",
        id="template-syntax",
    ),
]


@pytest.mark.parametrize(("name", "text", "expected"), BROKEN)
def test_check_names_file_and_line(
    cli: click.Group, library_root: Path, name: str, text: str, expected: str
) -> None:
    """Each kind of mistake is reported as one precise `file:line: message` line."""
    (library_root / name).write_text(text, encoding="utf-8")
    result = CliRunner().invoke(cli, ["content", "check"])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert any(line.startswith(expected) for line in lines), result.output
    assert after_context(result.stderr).startswith("Error: ")
    assert "found; fix them and run again" in result.stderr


def test_check_lists_every_problem_not_just_the_first(cli: click.Group, library_root: Path) -> None:
    (library_root / "content/tips/a.md").write_text("---\nsubject: A\n---\nx\n")
    (library_root / "content/tips/b.md").write_text("---\npreheader: B\n---\nx\n")
    result = CliRunner().invoke(cli, ["content", "check"])
    assert result.exit_code == 1
    assert result.stdout == (
        "content/tips/a.md:2: missing preheader: add 'preheader: ...' (the inbox preview text)\n"
        "content/tips/b.md:2: missing subject: add 'subject: ...' (the subject line (may use "
        "Jinja))\n"
    )
    assert after_context(result.stderr) == "Error: 2 problems found; fix them and run again\n"


def test_check_lists_every_problem_of_a_sequence_file(cli: click.Group, library_root: Path) -> None:
    """An unknown item, a bad `after:` and a bad priority in one sequence file: all three,
    with another sequence's problem too, in one run."""
    (library_root / "content/sequences/basics.yaml").write_text(
        "name: basics\nenroll: on_confirm\nsend_window: '08:00-11:00'\npriority: urgent\n"
        "steps:\n  - send: system/welcome\n    after: soon\n  - send: tips/missing\n"
        "    after: 2d\n  - send: tips/meet-your-ql\n    after: 1d\n    wait: 1\n"
    )
    (library_root / "content/sequences/other.yaml").write_text(
        "name: other\nenroll: always\nexit: {on_tag: [' ']}\nreenroll: maybe\n"
        "send_window: '8am'\nsteps: []\nthen: {every: 0d, from: [tips]}\ntags: words\n"
    )
    result = CliRunner().invoke(cli, ["content", "check"])
    assert result.exit_code == 1
    assert result.stdout == (
        "content/sequences/basics.yaml:4: bad priority 'urgent': use high, normal or low\n"
        "content/sequences/basics.yaml:7: bad delay 'soon': write a number and a unit, "
        "d (days), h (hours) or m (minutes), e.g. 3d, 12h or 1d12h\n"
        "content/sequences/basics.yaml:8: step 2 sends 'tips/missing', which is not in the "
        "content library (expected content/tips/missing.md)\n"
        "content/sequences/basics.yaml:12: unknown key 'wait'; allowed keys: send, after\n"
        "content/sequences/other.yaml:2: enroll must be on_confirm, manual or a mapping of "
        "on_confirm / on_tag / on_event, got 'always'\n"
        "content/sequences/other.yaml:3: exit.on_tag: ' ' is not a tag (a word without "
        "commas, at most 64 characters)\n"
        "content/sequences/other.yaml:4: reenroll must be true or false, got 'maybe'\n"
        "content/sequences/other.yaml:5: bad send_window '8am': write it as HH:MM-HH:MM, "
        "e.g. 08:00-11:00\n"
        "content/sequences/other.yaml:6: steps must be a list of '- send: <kind>/<slug>' "
        "entries\n"
        "content/sequences/other.yaml:7: then.every must be longer than zero\n"
        "content/sequences/other.yaml:8: tags must be a list of words\n"
    )
    assert after_context(result.stderr) == "Error: 11 problems found; fix them and run again\n"


def test_check_reports_a_missing_postal_address_once(
    cli: click.Group, library_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_POSTAL_ADDRESS", "")
    result = CliRunner().invoke(cli, ["content", "check"])
    assert result.exit_code == 1
    assert result.stdout == (
        "NEWSLETTER_POSTAL_ADDRESS is not set: every marketing email must show your postal "
        "address; set it (e.g. in .env) and run again\n"
    )


def test_list_prints_a_table(cli: click.Group, library_root: Path) -> None:
    result = CliRunner().invoke(cli, ["content", "list"])
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "ID                   KIND    SUBJECT                                                "
        "TEMPLATE\n"
        "system/confirmation  system  Please confirm                                         "
        "system\n"
        "system/welcome       system  Welcome                                                "
        "system\n"
        "tips/meet-your-ql    tips    Meet your QL, {{ subscriber.first_name or 'friend' }}"
        "  tip\n"
    )


def test_list_as_json(cli: click.Group, library_root: Path) -> None:
    result = CliRunner().invoke(cli, ["content", "list", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [row["id"] for row in rows] == [
        "system/confirmation",
        "system/welcome",
        "tips/meet-your-ql",
    ]
    assert rows[0]["transactional"] is True
    assert rows[2] == {
        "id": "tips/meet-your-ql",
        "kind": "tips",
        "subject": "Meet your QL, {{ subscriber.first_name or 'friend' }}",
        "template": "tip",
        "preheader": "The muscle behind most low back pain.",
        "tags": ["ql"],
        "medical": True,
        "transactional": False,
        "example": False,
        "path": "content/tips/meet-your-ql.md",
    }


def test_list_refuses_a_broken_library_with_a_next_step(
    cli: click.Group, library_root: Path
) -> None:
    (library_root / "content/tips/b.md").write_text("---\npreheader: B\n---\nx\n")
    result = CliRunner().invoke(cli, ["content", "list"])
    assert result.exit_code == 1
    assert after_context(result.stderr) == (
        "Error: content/tips/b.md:2: missing subject: add 'subject: ...' (the subject line "
        "(may use Jinja)); run `newsletter content check` to list every problem\n"
    )


def test_preview_writes_html_under_var_by_default(cli: click.Group, library_root: Path) -> None:
    result = CliRunner().invoke(cli, ["preview", "tips/meet-your-ql"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "var/preview/tips-meet-your-ql.html\n"
    html = (library_root / "var/preview/tips-meet-your-ql.html").read_text()
    assert "<title>Meet your QL, Alex</title>" in html
    assert "https://shop.example/unsubscribe/preview-token" in html


def test_preview_to_a_chosen_file(cli: click.Group, library_root: Path) -> None:
    result = CliRunner().invoke(
        cli, ["preview", "content/tips/meet-your-ql.md", "--output", "out/ql.html"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "out/ql.html\n"
    assert (library_root / "out/ql.html").read_text().startswith("<!DOCTYPE html>")


def test_preview_text_prints_the_plain_part(cli: click.Group, library_root: Path) -> None:
    result = CliRunner().invoke(cli, ["preview", "tips/meet-your-ql", "--text"])
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "Subject: Meet your QL, Alex\n"
        "Preheader: The muscle behind most low back pain.\n"
        "\n"
        "TIP\n"
        "Meet your QL, Alex\n"
        "\n"
        "Hi Alex,\n"
        "\n"
        "Press gently. See the guide (https://shop.example/guide).\n"
        "\n"
        "--\n"
        "You get this email because you subscribed to emails from Backease at shop.example.\n"
        "Unsubscribe with one click: https://shop.example/unsubscribe/preview-token\n"
        "Choose what you get: https://shop.example/preferences/preview-token\n"
        "\n"
        f"{ADDRESS}\n"
        "\n"
        "General information, not medical advice. If your pain is severe, keeps getting worse, "
        "or comes with numbness, weakness, fever, or bladder or bowel changes, see a doctor.\n"
    )
    assert not (library_root / "var/preview").exists()


def test_preview_unknown_item_suggests_the_closest(cli: click.Group, library_root: Path) -> None:
    result = CliRunner().invoke(cli, ["preview", "tips/meet-your-q"])
    assert result.exit_code == 1
    assert after_context(result.stderr) == (
        "Error: no content item 'tips/meet-your-q'; did you mean 'tips/meet-your-ql'?\n"
    )


def test_preview_refuses_without_postal_address(
    cli: click.Group, library_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_POSTAL_ADDRESS", "")
    result = CliRunner().invoke(cli, ["preview", "tips/meet-your-ql"])
    assert result.exit_code == 1
    assert "set NEWSLETTER_POSTAL_ADDRESS" in result.stderr
    assert after_context(result.stderr).startswith(
        "Error: content/tips/meet-your-ql.md: tips/meet-your-ql is"
    )


def test_commands_have_help(cli: click.Group) -> None:
    for args in (["content"], ["content", "list"], ["content", "check"], ["preview"]):
        result = CliRunner().invoke(cli, [*args, "--help"])
        assert result.exit_code == 0
        assert "Usage: newsletter" in result.stdout
