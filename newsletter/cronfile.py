"""``cron.yaml``: which recurring jobs run, and when.

```yaml
jobs:
  deliver:
    cron: "* * * * *"
    description: Hand due deliveries to the mail provider.
```

Parsing is pure (``parse_cron_file`` takes text); ``load_cron_file`` reads the file. Every
error is a ``ContentError`` naming the file and the line.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

from apscheduler.triggers.cron import CronTrigger

from newsletter.content.yaml_source import YamlDocument, parse_yaml
from newsletter.errors import ContentError

JOB_NAMES = (
    "plan-drips",
    "plan-campaigns",
    "deliver",
    "recover-leases",
    "webhooks",
    "events",
    "bounces",
    "sunset",
)
_JOB_KEYS = ("cron", "description")


@dataclass(frozen=True)
class CronJob:
    name: str
    cron: str  # a 5-field crontab expression, evaluated in UTC
    description: str = ""

    def trigger(self) -> CronTrigger:
        """The APScheduler trigger for this job (UTC)."""
        return CronTrigger.from_crontab(self.cron, timezone=UTC)


def load_cron_file(path: Path) -> list[CronJob]:
    """Read and validate *path*; ``ContentError`` with ``file:line`` on any problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ContentError(
            "cron file not found; create it (see cron.yaml in the project) or set "
            "NEWSLETTER_CRON_FILE",
            str(path),
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ContentError(f"cannot read cron file: {exc}", str(path)) from None
    return parse_cron_file(text, str(path))


def parse_cron_file(text: str, path: str) -> list[CronJob]:
    doc = parse_yaml(text, path)
    if not isinstance(doc.data, dict) or "jobs" not in doc.data:
        raise doc.error("a cron file needs a 'jobs:' mapping of job name -> {cron: ...}")
    for key in doc.data:
        if key != "jobs":
            raise doc.error(f"unknown key {key!r}; the only top-level key is 'jobs'", key)
    jobs = doc.data["jobs"]
    if not isinstance(jobs, dict) or not jobs:
        raise doc.error("jobs must map job names to {cron: ..., description: ...}", "jobs")
    return [_job(doc, str(name), entry) for name, entry in jobs.items()]


def missing_jobs(jobs: list[CronJob]) -> list[str]:
    """Known jobs the file does not schedule (each is then never run by the scheduler)."""
    named = {job.name for job in jobs}
    return [name for name in JOB_NAMES if name not in named]


def _job(doc: YamlDocument, name: str, entry: object) -> CronJob:
    where = ("jobs", name)
    if name not in JOB_NAMES:
        raise doc.error(f"unknown job {name!r}; known jobs: {', '.join(JOB_NAMES)}", *where)
    if not isinstance(entry, dict):
        raise doc.error(f"job {name!r} needs 'cron: \"<5-field crontab>\"'", *where)
    for key in entry:
        if key not in _JOB_KEYS:
            raise doc.error(
                f"unknown key {key!r} in job {name!r}; allowed: {', '.join(_JOB_KEYS)}",
                *where,
                key,
            )
    cron = entry.get("cron")
    if not isinstance(cron, str):
        raise doc.error(f"job {name!r} needs 'cron: \"<5-field crontab>\"' as a string", *where)
    description = entry.get("description", "")
    if not isinstance(description, str):
        raise doc.error("description must be a string", *where, "description")
    job = CronJob(name, cron.strip(), description.strip())
    try:
        job.trigger()
    except ValueError as exc:
        raise doc.error(
            f"bad cron expression {cron!r} for job {name!r}: {exc} (write 5 fields: minute "
            "hour day month weekday, e.g. '*/5 * * * *')",
            *where,
            "cron",
        ) from None
    return job
