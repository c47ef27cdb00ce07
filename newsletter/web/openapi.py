"""Request-body descriptions for ``/openapi.json`` (routes read raw bodies themselves)."""

from __future__ import annotations

from typing import Any

_SUBSCRIBE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["email"],
    "properties": {
        "email": {"type": "string", "format": "email", "maxLength": 254},
        "name": {"type": "string", "maxLength": 200},
        "first_name": {"type": "string", "maxLength": 200},
        "timezone": {"type": "string", "example": "Europe/Berlin"},
        "tags": {"type": "string", "description": "comma-separated"},
        "source": {"type": "string"},
        "redirect": {"type": "string", "format": "uri"},
        "website": {"type": "string", "description": "honeypot: must stay empty"},
    },
}

SUBSCRIBE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {"schema": _SUBSCRIBE_SCHEMA},
            "multipart/form-data": {"schema": _SUBSCRIBE_SCHEMA},
            "application/json": {"schema": _SUBSCRIBE_SCHEMA},
        },
    },
    "parameters": [
        {
            "name": "X-Newsletter-Signature",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "pattern": "^sha256=[0-9a-f]{64}$"},
        }
    ],
}

TOKEN_FORM_BODY: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {"List-Unsubscribe": {"type": "string", "enum": ["One-Click"]}},
                }
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"List-Unsubscribe": {"type": "string", "enum": ["One-Click"]}},
                }
            },
        },
    }
}
