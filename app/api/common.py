"""Pieces shared by the API modules: strict request bodies, the write rate limit, opaque cursors.

:func:`enforce_write_rate_limit` is the per-caller write rate limit; :mod:`app.main` applies it to
every router, pages and API alike, so no state-changing route can skip it. ``write_api_router`` is
:func:`app.api.router.api_router` with that 429 documented in the OpenAPI schema.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api.router import ErrorResponse, api_router
from app.deps import MAX_DB_INT, PrincipalDep, SettingsDep
from app.domain.ratelimit import SlidingWindowLimiter
from app.errors import InvalidInput

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
RATE_LIMITED: dict[int | str, dict[str, Any]] = {
    429: {
        "model": ErrorResponse,
        "description": "Too many writes by this caller in the last minute; see Retry-After.",
        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}},
    }
}
UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorResponse, "description": "No inference worker answered in time."}
}
_limiter_lock = threading.Lock()


class StrictInput(BaseModel):
    """Base of request bodies: JSON types as documented (no "1" for 1, no 0 for false), and
    unknown fields refused, so a misspelt field is a 422 instead of a silently ignored value."""

    model_config = ConfigDict(strict=True, extra="forbid")


class RateLimitExceeded(StarletteHTTPException):
    """429 with ``Retry-After``. An HTTPException because only that handler copies headers."""

    def __init__(self, retry_after: int, limit: int) -> None:
        super().__init__(
            status_code=429,
            detail=(
                f"Rate limit exceeded: at most {limit} write requests a minute per token or "
                "signed-in user. "
                f"Retry after {retry_after} s."
            ),
            headers={"Retry-After": str(retry_after)},
        )


def _limiter(request: Request, limit: int) -> SlidingWindowLimiter:
    """The app's limiter, created on first use (one per app, so tests do not share windows)."""
    state = request.app.state
    limiter: SlidingWindowLimiter | None = getattr(state, "write_rate_limiter", None)
    if limiter is None or limiter.limit != limit:
        with _limiter_lock:
            limiter = getattr(state, "write_rate_limiter", None)
            if limiter is None or limiter.limit != limit:
                limiter = SlidingWindowLimiter(limit)
                state.write_rate_limiter = limiter
    return limiter


def enforce_write_rate_limit(
    request: Request, principal: PrincipalDep, settings: SettingsDep
) -> None:
    """Count a write by this token (or signed-in user); refuse with 429 beyond the limit.

    Anonymous writes are not counted: the access layer refuses them anyway.
    """
    if request.method not in WRITE_METHODS or principal is None:
        return
    # The token's hash, not its id: ids can be reused (a rolled-back test, a restored backup).
    key = f"token:{principal.token.token_hash}" if principal.token else f"user:{principal.user.id}"
    decision = _limiter(request, settings.write_rate_limit_per_minute).hit(key)
    if not decision.allowed:
        raise RateLimitExceeded(decision.retry_after_seconds, decision.limit)


def write_api_router(*, tags: list[str]) -> APIRouter:
    """An ``/api/v1`` router with write routes: documents their 429 (the limit itself is applied
    to every router by :func:`app.main.create_app`)."""
    router = api_router(tags=tags)
    router.responses.update(RATE_LIMITED)
    return router


# --------------------------------------------------------------------------- cursors


def encode_cursor(last_id: int) -> str:
    """An opaque cursor for keyset pagination (clients must not build these themselves)."""
    raw = json.dumps({"after": last_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    """The id after which the next page starts; 422 for a cursor we did not hand out."""
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        after = data["after"]
        if isinstance(after, bool) or not isinstance(after, int) or not 0 <= after <= MAX_DB_INT:
            raise ValueError(after)
        return after
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput(
            "Invalid cursor; pass back the next_cursor of the previous page unchanged.",
            details={"errors": [{"loc": ["query", "cursor"], "message": "invalid cursor"}]},
        ) from None
