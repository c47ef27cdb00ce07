"""Logging for the processes: quiet by default, everything with ``--verbose``, JSON on request.

This module owns the global logging state. By default our own loggers speak at INFO and
third parties (APScheduler, uvicorn, Alembic, httpx) only at WARNING, so a running service logs
one canonical line per job run that did something (``job_line``) and its problems.
``--verbose`` shows everything at DEBUG, APScheduler's INFO lines included.
``NEWSLETTER_LOG_FORMAT=json`` writes one JSON object per line, with a canonical line's
fields (``job``, ``counts``, ``duration_s``) as keys.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

QUIET_LIBRARIES = (
    "apscheduler",
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "alembic",
    "httpx",  # one INFO line per request (webhooks, SendGrid): noise unless --verbose
    "httpcore",
)
FIELDS = ("job", "counts", "duration_s")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, canonical fields, error."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of the record (test runners swap it)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        """Ignored: the stream is always the current ``sys.stderr``."""


def configure_logging(*, verbose: bool, fmt: str = "text") -> None:
    """Set up the root handler once more (idempotent: the old handler is replaced)."""
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_newsletter", False)]:
        root.removeHandler(old)
    handler._newsletter = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)


# Bookkeeping a job reports that is not work done: a run that only committed an empty
# transaction, went through empty batches, found the planner lock taken or the job switched
# off did nothing worth a line.
BOOKKEEPING = frozenset({"commits", "batches", "locked", "enabled", "endpoints"})


def did_something(result: Mapping[str, Any]) -> bool:
    """True when a job's result reports real work: a non-zero count of rows planned, sent,
    advanced, failed, events processed ... (nested counts included), or a value such as an
    error or a provider backoff. ``BOOKKEEPING`` keys never count."""
    for key, value in result.items():
        if key in BOOKKEEPING:
            continue
        if isinstance(value, Mapping):
            if did_something(value):
                return True
        elif isinstance(value, int | float):  # bool included
            if value:
                return True
        elif value not in (None, "", [], ()):
            return True
    return False


def job_line(name: str, result: Mapping[str, Any], duration: float) -> str:
    """``job deliver: claimed=3 sent=3 outcomes.sent=3 (0.12s)``: a canonical log line."""
    counts = " ".join(f"{key}={value}" for key, value in _flat(result))
    return f"job {name}: {counts} ({duration:.2f}s)"


def log_job(logger: logging.Logger, name: str, result: Mapping[str, Any], duration: float) -> None:
    """One INFO line for a run that did something; a run with nothing to do is DEBUG."""
    level = logging.INFO if did_something(result) else logging.DEBUG
    logger.log(
        level,
        job_line(name, result, duration),
        extra={"job": name, "counts": dict(result), "duration_s": round(duration, 3)},
    )


def _flat(result: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    for key, value in result.items():
        if isinstance(value, Mapping):
            found += _flat(value, f"{prefix}{key}.")
        else:
            found.append((f"{prefix}{key}", value))
    return found
