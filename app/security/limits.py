"""Request body limit (``TAPESTRY_MAX_UPLOAD_BYTES``): refuse oversized uploads with a clear 413.

A declared ``Content-Length`` over the limit is answered before the body is read. A body without
one (chunked) is counted while it streams; crossing the limit raises :class:`UploadTooLarge` inside
the route. It is an ``HTTPException`` (not a domain error) because FastAPI re-raises only those from
its body parsing; the one error handler renders it with code ``payload_too_large``.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.error_handlers import render_error
from app.errors import PayloadTooLarge


def too_large_message(limit: int) -> str:
    mib = limit / (1024 * 1024)
    return (
        f"The upload is larger than this server accepts ({mib:.1f} MiB). Split the file or ask "
        "an administrator to raise TAPESTRY_MAX_UPLOAD_BYTES."
    )


class UploadTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=too_large_message(limit))


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int | Callable[[], int]) -> None:
        self.app = app
        self._max_bytes = max_bytes

    @property
    def max_bytes(self) -> int:
        return self._max_bytes() if callable(self._max_bytes) else self._max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            response: Response = render_error(
                Request(scope),
                status_code=413,
                code=PayloadTooLarge.code,
                message=too_large_message(limit),
                details={"max_bytes": limit, "declared_bytes": declared},
            )
            await response(scope, receive, send)
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise UploadTooLarge(limit)
            return message

        await self.app(scope, counting_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
