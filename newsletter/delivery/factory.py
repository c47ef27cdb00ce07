"""Pick the mail backend named by the settings (the only place that knows all three)."""

from __future__ import annotations

from newsletter.delivery.base import Mailer
from newsletter.delivery.outbox import OutboxMailer
from newsletter.settings import Settings


def make_mailer(settings: Settings) -> Mailer:
    if settings.mail_backend == "sendgrid":
        from newsletter.delivery.sendgrid import SendGridMailer

        return SendGridMailer(api_key=settings.sendgrid_api_key, api_url=settings.sendgrid_api_url)
    if settings.mail_backend == "smtp":
        from newsletter.delivery.smtp import SMTPMailer

        return SMTPMailer.from_url(settings.smtp_url)
    return OutboxMailer(settings.effective_outbox_dir)
