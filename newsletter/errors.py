"""The one exception tree of the project.

Every error says what went wrong, with the offending value, and what to do next.
Messages never carry a secret.
"""

from __future__ import annotations


class NewsletterError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigurationError(NewsletterError, ValueError):
    """A setting is missing or invalid; the message names the environment variable."""

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        self.problem = problem
        super().__init__(f"{variable}: {problem}")


class InvalidEmailError(NewsletterError, ValueError):
    """An address failed syntax validation."""

    def __init__(self, email: str, reason: str) -> None:
        self.email = email
        self.reason = reason
        super().__init__(f"invalid email address {email!r}: {reason}")


class SubscriberNotFound(NewsletterError, LookupError):
    """No subscriber has this address (or it was forgotten)."""

    def __init__(self, email: str) -> None:
        self.email = email
        super().__init__(
            f"no subscriber with address {email!r}; check the spelling or run "
            "`newsletter subscribers list`"
        )


class SuppressedAddressError(NewsletterError):
    """The address is on the suppression list and must not be mailed."""

    def __init__(self, email: str, reason: str) -> None:
        self.email = email
        self.reason = reason
        hint = (
            "; they can come back by confirming themselves: run `newsletter subscribers add "
            f"{email}` without --confirmed to send the opt-in email"
            if reason in ("unsubscribed", "forgotten")
            else ""
        )
        super().__init__(f"{email!r} is suppressed ({reason}); it will not be mailed{hint}")


class TokenError(NewsletterError, ValueError):
    """A confirm or unsubscribe token is malformed, forged or for another purpose."""


class TokenExpiredError(TokenError):
    """A confirm token is genuine but too old; the visitor can ask for a new one."""


class ContentError(NewsletterError, ValueError):
    """A content file, sequence, template or cron file is invalid.

    ``path`` and ``line`` locate the problem when known.
    """

    def __init__(self, message: str, path: str | None = None, line: int | None = None) -> None:
        self.message = message
        self.path = path
        self.line = line
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(f"{where}{message}")


class ItemNotFound(ContentError, LookupError):
    """No content item has this id."""


class RenderError(ContentError):
    """An item could not be rendered (undefined variable, missing footer, ...)."""


class DeliveryError(NewsletterError):
    """Base of mail-provider failures, translated at the adapter edge.

    Per-message outcomes (retry later, permanent failure, unknown) are not exceptions: a
    backend reports them as ``SendResult`` statuses, one per message, so one bad recipient
    never aborts a batch. Only a failure that stops all sending is raised.
    """


class ProviderAuthError(DeliveryError):
    """The provider refused our credentials (HTTP 401/403): all sending stops until fixed."""


class SendingHaltedError(NewsletterError):
    """Sending is halted after a provider refused our credentials."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(
            f"sending is halted: {reason}. Fix the credentials, then run "
            "`newsletter delivery resume` (or restart with a valid key)"
        )


class CampaignError(NewsletterError, ValueError):
    """A campaign operation was refused; the message says why and what to do."""


class CampaignNotFound(CampaignError, LookupError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no campaign named {name!r}; run `newsletter campaign list`")


class WebhookError(NewsletterError, ValueError):
    """A webhook operation was refused; the message says why and what to do."""


class WebhookURLError(WebhookError):
    """A webhook URL is malformed or points somewhere it may not."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"webhook URL {url!r} refused: {reason}")


class WebhookNotFound(WebhookError, LookupError):
    def __init__(self, endpoint_id: int) -> None:
        self.endpoint_id = endpoint_id
        super().__init__(f"no webhook with id {endpoint_id}; run `newsletter webhook list`")


class WebhookDeliveryNotFound(WebhookError, LookupError):
    def __init__(self, delivery_id: int) -> None:
        self.delivery_id = delivery_id
        super().__init__(
            f"no webhook delivery with id {delivery_id}; run `newsletter webhook deliveries`"
        )


class UnknownTimeZoneError(NewsletterError, ValueError):
    """A time zone name given on purpose (an option) is not an IANA zone."""

    def __init__(self, name: str, option: str = "--timezone") -> None:
        self.name = name
        super().__init__(
            f"unknown time zone {name[:64]!r} for {option}; use an IANA name such as "
            "Europe/Berlin (`newsletter timezones` lists them)"
        )


class ContentProblems(ContentError):
    """Several problems in one content file, all found in one pass (``problems``)."""

    def __init__(self, problems: list[ContentError]) -> None:
        self.problems = list(problems)
        first = self.problems[0]
        super().__init__(first.message, first.path, first.line)


class PreferencesError(NewsletterError, ValueError):
    """A preference-centre form was refused (unknown topic or frequency); nothing saved."""


class InvalidAttributes(NewsletterError, ValueError):
    """Custom fields (``attributes``) or event properties break a documented limit."""


class ApiKeyError(NewsletterError, ValueError):
    """An API key operation was refused (unknown name, name taken, bad scope)."""


class SubscriberConflict(NewsletterError):
    """The address exists in a state the request may not change (e.g. unsubscribed)."""

    def __init__(self, email: str, status: str, message: str) -> None:
        self.email = email
        self.status = status
        super().__init__(message)


class TriggerError(NewsletterError, ValueError):
    """A manual enroll or exit was refused (e.g. the subscriber is not active)."""
