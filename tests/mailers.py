"""Fake mailers the tests and benches share: they accept everything and record it."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime

from newsletter.delivery.base import OutgoingEmail, SendResult, SendStatus


class RecordingMailer:
    """Accepts everything and remembers what it was given."""

    name = "recording"
    max_batch = 500

    def __init__(self) -> None:
        self.sent: list[OutgoingEmail] = []

    def send_batch(self, messages: Sequence[OutgoingEmail]) -> list[SendResult]:
        self.sent.extend(messages)
        return [
            SendResult(m.delivery_id, SendStatus.SENT, f"msg-{m.delivery_id}") for m in messages
        ]

    def close(self) -> None:
        return None


class HandOverClock:
    """Accepts everything and notes when each delivery id was first handed over (wall
    clock), from any number of threads."""

    name = "recording"
    max_batch = 100

    def __init__(self) -> None:
        self.sent: dict[int, datetime] = {}
        self.lock = threading.Lock()

    def send_batch(self, messages: Sequence[OutgoingEmail]) -> list[SendResult]:
        at = datetime.now(UTC)
        with self.lock:
            for m in messages:
                self.sent.setdefault(m.delivery_id, at)
        return [
            SendResult(m.delivery_id, SendStatus.SENT, f"rec-{m.delivery_id}") for m in messages
        ]

    def close(self) -> None:
        return None
