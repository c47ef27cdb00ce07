"""Read a request body under a size cap, then its fields by content type."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request

from newsletter.web.form_input import BadRequest, collect_fields, parse_json, parse_urlencoded

MULTIPART_LIMITS = {"max_files": 0, "max_fields": 50}


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, or ``BadRequest(413)`` as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise BadRequest(400, "Content-Length is not a number")
        if int(declared) > limit:
            raise BadRequest(413, f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(413, f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # let request.form() re-read the body we already consumed
    return body


async def read_fields(request: Request, body: bytes) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json" or content_type.endswith("+json"):
        return parse_json(body)
    if content_type == "application/x-www-form-urlencoded":
        return parse_urlencoded(body)
    if content_type == "multipart/form-data":
        try:
            form = await request.form(**MULTIPART_LIMITS)
        except Exception as exc:
            raise BadRequest(400, f"the multipart body could not be parsed: {exc}") from None
        items = form.multi_items()
        if any(isinstance(value, UploadFile) for _, value in items):
            raise BadRequest(400, "file uploads are not accepted")
        return collect_fields(items)  # a repeated field is a list, as in urlencoded bodies
    raise BadRequest(
        415,
        "send application/x-www-form-urlencoded, multipart/form-data or application/json",
    )
