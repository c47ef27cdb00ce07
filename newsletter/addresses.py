"""Email address validation, normalisation and hashing (pure; no DNS lookups)."""

from __future__ import annotations

import hashlib

from email_validator import EmailNotValidError, validate_email

from newsletter.errors import InvalidEmailError

MAX_LENGTH = 254


def normalize_email(raw: str) -> str:
    """Validate syntax and return the canonical form (NFC, lower case).

    Raises ``InvalidEmailError`` with the validator's reason.
    """
    candidate = raw.strip()
    if not candidate:
        raise InvalidEmailError(raw, "the address is empty")
    if len(candidate) > MAX_LENGTH:
        raise InvalidEmailError(raw[:60] + "...", f"longer than {MAX_LENGTH} characters")
    try:
        result = validate_email(candidate, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidEmailError(candidate, str(exc)) from None
    return result.normalized.lower()


def email_hash(normalized: str) -> str:
    """The suppression key: SHA-256 of the normalised address."""
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()
