"""Tracking of our own: signed open/click tokens, link rewriting, machine-vs-human
classification, and the use cases behind ``GET /t/o/{token}`` and ``GET /t/c/{token}``."""
