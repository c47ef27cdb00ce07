"""The composition root: settings in, adapters picked once, handed to use cases."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from newsletter.db import make_engine, session_factory, upgrade
from newsletter.delivery.base import Mailer
from newsletter.delivery.factory import make_mailer
from newsletter.delivery.rate import SendRateLimiter
from newsletter.settings import Settings

if TYPE_CHECKING:
    from newsletter.content.library import ContentLibrary
    from newsletter.webhooks.sender import WebhookSender


class App:
    """Everything a use case needs, built lazily from one ``Settings``."""

    def __init__(
        self,
        settings: Settings,
        *,
        mailer: Mailer | None = None,
        clock: Callable[[], datetime] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self._mailer = mailer
        # The wall clock and sleep used for real-time pacing (SEND_RATE); use cases still
        # receive their logical ``now`` as a parameter.
        self.clock = clock or (lambda: datetime.now(UTC))
        self.sleep = sleep

    @cached_property
    def engine(self) -> Engine:
        return make_engine(
            self.settings.effective_database_url,
            sqlite_synchronous=self.settings.sqlite_synchronous,
        )

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return session_factory(self.engine)

    @cached_property
    def library(self) -> ContentLibrary:
        from newsletter.content.library import load_library

        library = load_library(self.settings)
        _freeze_once()
        return library

    @cached_property
    def send_limiter(self) -> SendRateLimiter:
        return SendRateLimiter(self.sessions, self.settings.send_rate)

    @property
    def mailer(self) -> Mailer:
        if self._mailer is None:
            self._mailer = make_mailer(self.settings)
        return self._mailer

    @cached_property
    def webhook_sender(self) -> WebhookSender:
        """One keep-alive HTTP client for outgoing webhooks, shared by the job's threads."""
        from newsletter.webhooks.sender import WebhookSender

        return WebhookSender(
            timeout=self.settings.webhook_timeout_seconds,
            allow_private=self.settings.webhook_allow_private,
            connections=self.settings.webhook_concurrency,
        )

    def migrate(self) -> None:
        upgrade(self.engine)

    def close(self) -> None:
        if self._mailer is not None:
            self._mailer.close()
        if "webhook_sender" in self.__dict__:
            self.webhook_sender.close()
        if "engine" in self.__dict__:
            self.engine.dispose()


_frozen: list[bool] = []


def _freeze_once() -> None:
    """Once per process, after the first library is loaded: the library (compiled
    templates, parsed content) and the modules loaded so far live as long as the
    process; moved out of the collector's way, full collections stop rescanning them
    during every batch (about a fifth of dispatch CPU)."""
    if not _frozen:
        _frozen.append(True)
        gc.collect()
        gc.freeze()
