"""Example content (``example: true``) never reaches real people.

The drip records it ``skipped`` ("example content") and moves on to the next item in
its slot; campaigns refuse to schedule it; ``content check`` warns (fails with
``--strict``); ``preview`` and test sends still show it.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from newsletter.app import App
from newsletter.cli import main
from newsletter.models import Delivery
from newsletter.settings import load_settings
from tests.cli_output import after_context
from tests.conftest import NOW, ROOT
from tests.mailbox import read_outbox

EXAMPLES = [
    "testimonials/desk-worker",
    "testimonials/new-parent",
    "testimonials/runner",
    "testimonials/weekend-gardener",
]


def run(env: dict[str, Any], *args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(main, list(args), env=env)
    assert result.exit_code == code, (result.output, result.exception)
    return result


def test_the_shipped_testimonials_are_examples() -> None:
    for item in EXAMPLES:
        assert "example: true" in (ROOT / "content" / f"{item}.md").read_text()


def test_tick_skips_example_items_and_the_sequence_moves_past_them(
    cli_env: dict[str, Any],
) -> None:
    """A subscriber goes through the shipped sequence with one tick a day: the example
    testimonial of step 6 and the example testimonials of the rotation are ledger rows
    ``skipped`` with the reason, never an email; the next item goes out in their slot."""
    run(cli_env, "subscribers", "add", "reader@example.org", "--confirmed", "--timezone", "UTC",
        "--now", NOW.isoformat())  # fmt: skip
    days = 36
    for day in range(days):
        at = (NOW + timedelta(days=day)).replace(hour=9)
        out = run(cli_env, "tick", "--now", at.isoformat()).output
        if day == 0:
            assert '"examples_skipped": 0' in out
    app = App(load_settings(cli_env))
    try:
        with app.sessions() as session:
            rows = list(session.scalars(select(Delivery).order_by(Delivery.id)))
        subjects = [str(m["Subject"]) for m in read_outbox(app.settings.effective_outbox_dir)]
    finally:
        app.close()
    by_item = {r.item_id: r for r in rows}
    skipped = [r.item_id for r in rows if r.status == "skipped"]
    # Step 6, then the testimonial turn of the rotation (the next kind follows at once).
    assert skipped == ["testimonials/desk-worker", "testimonials/new-parent"]
    assert {by_item[i].error for i in skipped} == {"example content"}
    assert all(by_item[i].sent_at is None for i in skipped)
    sent = [r for r in rows if r.status == "sent"]
    assert len(subjects) == len(sent)
    assert not any("testimonial" in r.item_id for r in sent)
    # Step 7 went out in step 6's slot: 4 days after step 5, not 8.
    step5, step7 = by_item["tutorials/first-session"], by_item["tips/glutes-and-back-pain"]
    assert step5.sent_at is not None
    assert step7.sent_at is not None
    assert (step7.sent_at - step5.sent_at).days == 4
    assert by_item["testimonials/desk-worker"].created_at == step7.created_at
    assert "tips/when-to-see-a-doctor" in by_item  # the sequence carried on


def test_sequence_simulate_shows_what_the_planner_sends(cli_env: dict[str, Any]) -> None:
    result = run(cli_env, "sequence", "simulate", "back-pain-basics", "--signup",
                 "2026-11-24T09:00", "--timezone", "UTC", "--rotations", "3",
                 "--format", "json")  # fmt: skip
    items = [row["item"] for row in json.loads(result.stdout)]
    assert not set(items) & set(EXAMPLES)
    assert items[5] == "tips/glutes-and-back-pain"  # in the slot of the example (step 6)


def test_content_check_lists_examples_as_warnings_and_fails_with_strict(
    cli_env: dict[str, Any],
) -> None:
    ok = run(cli_env, "content", "check")
    warnings = [line for line in ok.stdout.splitlines() if ": warning: " in line]
    assert warnings == [
        f"{ROOT / 'content' / item}.md: warning: {item} is example content (example: true): "
        "the drip and campaigns skip it, so subscribers never get it; replace it with your "
        "own and remove the flag"
        for item in EXAMPLES
    ]
    assert ok.stdout.splitlines()[-1].startswith("OK: 27 items")
    strict = run(cli_env, "content", "check", "--strict", code=1)
    assert strict.stdout.splitlines() == warnings
    assert after_context(strict.stderr) == (
        "Error: 4 warnings with --strict; replace the example content and remove "
        "'example: true', then run again\n"
    )


def test_preview_still_shows_example_content(cli_env: dict[str, Any]) -> None:
    result = run(cli_env, "preview", "testimonials/desk-worker", "--text")
    assert "Example testimonial" in result.stdout


@pytest.fixture
def example_campaign_env(cli_env: dict[str, Any], tmp_path: Any) -> dict[str, Any]:
    """The shipped library plus one campaign item marked as an example."""
    import shutil

    content = tmp_path / "content"
    shutil.copytree(ROOT / "content", content)
    source = (content / "campaigns" / "seven-day-reset.md").read_text()
    (content / "campaigns" / "sample-offer.md").write_text(
        source.replace("---\n", "---\nexample: true\n", 1)
    )
    return {**cli_env, "NEWSLETTER_CONTENT_DIR": str(content)}


def test_a_campaign_of_example_content_cannot_be_scheduled_but_can_be_test_sent(
    example_campaign_env: dict[str, Any],
) -> None:
    env = example_campaign_env
    now = NOW.isoformat()
    run(env, "subscribers", "add", "member@example.org", "--confirmed", "--now", now)
    run(env, "campaign", "create", "campaigns/sample-offer", "--now", now)
    refused = run(env, "campaign", "schedule", "sample-offer", "--at",
                  (NOW + timedelta(days=1)).isoformat(), "--now", now, code=1)  # fmt: skip
    assert after_context(refused.stderr) == (
        "Error: 'campaigns/sample-offer' is example content (example: true) and is never sent "
        "to real subscribers; replace it with your own and remove the flag, or pick another "
        "item\n"
    )
    test = run(env, "campaign", "test", "sample-offer", "--to", "seed@shop.example", "--now", now)
    assert test.stdout == "seed@shop.example: sent\n"
    app = App(load_settings(env))
    try:
        [message] = read_outbox(app.settings.effective_outbox_dir)
    finally:
        app.close()
    assert str(message["To"]) == "seed@shop.example" or "seed@shop.example" in str(message["To"])


def test_a_campaign_whose_item_became_an_example_after_scheduling_never_goes_out(
    example_campaign_env: dict[str, Any],
) -> None:
    env = example_campaign_env
    now = NOW.isoformat()
    run(env, "subscribers", "add", "member@example.org", "--confirmed", "--now", now)
    run(env, "campaign", "create", "campaigns/seven-day-reset", "--now", now)
    at = (NOW + timedelta(hours=1)).isoformat()
    run(env, "campaign", "schedule", "seven-day-reset", "--at", at, "--now", now)
    item = Path(env["NEWSLETTER_CONTENT_DIR"]) / "campaigns" / "seven-day-reset.md"
    item.write_text(item.read_text().replace("---\n", "---\nexample: true\n", 1))
    run(env, "tick", "--now", (NOW + timedelta(hours=1, minutes=1)).isoformat())
    shown = json.loads(run(env, "campaign", "show", "seven-day-reset", "--format", "json").stdout)
    assert shown["state"] == "paused"
    refused = run(env, "campaign", "resume", "seven-day-reset", "--now", now, code=1)
    assert "is example content (example: true)" in refused.stderr
    app = App(load_settings(env))
    try:
        subjects = [str(m["Subject"]) for m in read_outbox(app.settings.effective_outbox_dir)]
        assert not any(s.startswith("Join the 7-day back reset") for s in subjects)
        with app.sessions() as session:
            campaign_rows = session.scalars(
                select(Delivery.status).where(Delivery.kind == "campaign")
            ).all()
        assert set(campaign_rows) <= {"queued"}  # held: a paused campaign's rows wait
    finally:
        app.close()
