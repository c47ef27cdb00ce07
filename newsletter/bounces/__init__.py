"""Bounces and complaints from every backend: SMTP refusals, VERP return paths, DSN
(RFC 3464) and ARF (RFC 5965) reports read from a mailbox over IMAP."""
