"""The ``outbox`` backend: one RFC 5322 ``.eml`` file per message in a folder.

The embedded default: a person opens the files in a mail client, tests read them back.
Files are written to a temporary name and renamed, so a reader never sees half a message.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from newsletter.delivery.base import OutgoingEmail, SendResult, SendStatus
from newsletter.delivery.mime import build_mime


class OutboxMailer:
    name = "outbox"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)

    def send_batch(self, messages: Sequence[OutgoingEmail]) -> list[SendResult]:
        results = []
        for message in messages:
            mime = build_mime(message)
            message_id = mime["Message-ID"].strip("<>")
            target = self.directory / f"{message.delivery_id:012d}.eml"
            temporary = target.with_suffix(".tmp")
            try:
                temporary.write_bytes(mime.as_bytes())
                os.replace(temporary, target)
            except OSError as exc:
                results.append(
                    SendResult(message.delivery_id, SendStatus.RETRY, error=f"outbox: {exc}")
                )
                continue
            results.append(SendResult(message.delivery_id, SendStatus.SENT, message_id))
        return results

    def close(self) -> None:
        return None
