"""newsletter: a self-hosted drip-email newsletter service."""

__version__ = "0.1.0"
