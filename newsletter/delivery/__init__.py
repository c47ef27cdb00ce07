"""Mail delivery: the port (``base``) and its adapters (outbox, smtp, sendgrid)."""
