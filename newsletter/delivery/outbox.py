"""The ``outbox`` backend: one RFC 5322 ``.eml`` file per message in a folder.

The embedded default: a person opens the files in a mail client, tests read them back.
Files are written to a temporary name and renamed, so a reader never sees half a message.
Each email is built once and the bytes written are the bytes checked
(``mime.build_checked``): one that fails fails alone, the others are written.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from newsletter.delivery.base import OutgoingEmail, SendResult, SendStatus
from newsletter.delivery.mime import build_checked


class OutboxMailer:
    name = "outbox"
    # Emails per chunk (one commit marks a chunk ``sending``): a file each, ~0.2 ms, so a
    # chunk of 500 is written in about 0.1 s; the dispatcher's default of 100 spent more
    # on the per-chunk statements than on the files.
    max_batch = 500

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)

    def send_batch(self, messages: Sequence[OutgoingEmail]) -> list[SendResult]:
        results = []
        for message in messages:
            built = build_checked(message)
            if isinstance(built, str):  # this email alone fails; the others go out
                error = f"outbox: {built}"[:1000]
                results.append(SendResult(message.delivery_id, SendStatus.FAILED, error=error))
                continue
            data, message_id = built.data, built.message_id
            target = self.directory / f"{message.delivery_id:012d}.eml"
            temporary = target.with_suffix(".tmp")
            try:
                temporary.write_bytes(data)
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
