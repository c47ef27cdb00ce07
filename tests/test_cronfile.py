"""cron.yaml parsing: the shipped file, and each mistake located by file:line."""

from __future__ import annotations

from pathlib import Path

import pytest
from content_fixtures import ROOT

from newsletter.cronfile import JOB_NAMES, CronJob, load_cron_file, missing_jobs, parse_cron_file
from newsletter.errors import ContentError


def test_the_shipped_cron_file_schedules_every_job() -> None:
    jobs = load_cron_file(ROOT / "cron.yaml")
    assert [job.name for job in jobs] == list(JOB_NAMES)
    assert {job.name: job.cron for job in jobs} == {
        "plan-drips": "* * * * *",
        "plan-campaigns": "* * * * *",
        "deliver": "* * * * *",
        "recover-leases": "*/5 * * * *",
        "webhooks": "* * * * *",
        "events": "* * * * *",
        "bounces": "*/10 * * * *",
        "sunset": "30 3 * * *",
    }
    assert all(job.description for job in jobs)
    assert missing_jobs(jobs) == []


def test_a_job_gives_its_trigger() -> None:
    trigger = CronJob("deliver", "*/5 * * * *").trigger()
    assert str(trigger.timezone) == "UTC"
    assert "minute='*/5'" in str(trigger)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("jobs: [oops\n", "cron.yaml:2: invalid YAML: ", id="bad-yaml"),
        pytest.param("{}\n", "cron.yaml:1: a cron file needs a 'jobs:' mapping", id="no-jobs"),
        pytest.param(
            "jobs:\n  deliver:\n    cron: '* * * *'\n",
            "cron.yaml:3: bad cron expression '* * * *' for job 'deliver': ",
            id="four-fields",
        ),
        pytest.param(
            "jobs:\n  deliver:\n    cron: '0 25 * * *'\n",
            "cron.yaml:3: bad cron expression '0 25 * * *'",
            id="hour-25",
        ),
        pytest.param(
            "jobs:\n  deliver:\n    cron: '* * * * *'\n  backup:\n    cron: '* * * * *'\n",
            "cron.yaml:4: unknown job 'backup'; known jobs: plan-drips, plan-campaigns, "
            "deliver, recover-leases, webhooks",
            id="unknown-job",
        ),
        pytest.param(
            "jobs:\n  deliver:\n    cron: '* * * * *'\n    every: 1m\n",
            "cron.yaml:4: unknown key 'every' in job 'deliver'; allowed: cron, description",
            id="unknown-key",
        ),
        pytest.param(
            "jobs:\n  deliver:\n    description: x\n",
            "cron.yaml:2: job 'deliver' needs 'cron: \"<5-field crontab>\"' as a string",
            id="missing-cron",
        ),
        pytest.param(
            "jobs:\n  deliver: {cron: '* * * * *'}\n  deliver: {cron: '*/2 * * * *'}\n",
            "cron.yaml:3: duplicate key 'deliver'; keep only one of them",
            id="duplicate-job",
        ),
        pytest.param(
            "jobs:\n  deliver:\n    cron: '* * * * *'\nextra: 1\n",
            "cron.yaml:4: unknown key 'extra'; the only top-level key is 'jobs'",
            id="unknown-top-level",
        ),
    ],
)
def test_mistakes_are_located(text: str, expected: str) -> None:
    with pytest.raises(ContentError) as caught:
        parse_cron_file(text, "cron.yaml")
    assert str(caught.value).startswith(expected)


def test_missing_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ContentError, match="set NEWSLETTER_CRON_FILE"):
        load_cron_file(tmp_path / "cron.yaml")


def test_missing_jobs_are_listed() -> None:
    jobs = parse_cron_file("jobs:\n  deliver:\n    cron: '* * * * *'\n", "cron.yaml")
    assert missing_jobs(jobs) == [
        "plan-drips",
        "plan-campaigns",
        "recover-leases",
        "webhooks",
        "events",
        "bounces",
        "sunset",
    ]
