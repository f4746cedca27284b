"""Shared pieces of every API module: the ``/api/v1`` prefix and the documented error shape."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

API_PREFIX = "/api/v1"


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any]


class ErrorResponse(BaseModel):
    """Every API error has this body; ``code`` is stable, ``message`` is for people."""

    error: ErrorDetail


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 403, 404, 409, 413, 422)
}


NOT_SUPPORTED: dict[int | str, dict[str, Any]] = {
    501: {"model": ErrorResponse,
          "description": "Not supported (code `not_supported`): a feature this project cannot use "
                         "yet, e.g. gold items or adapter queue rebuilds in a multi-label project; "
                         "the message says which and why."},
}
"""Documented on the routers whose operations refuse such features (the refusal names them)."""


def api_router(*, tags: list[str]) -> APIRouter:
    """An ``APIRouter`` under ``/api/v1`` with the error responses documented in OpenAPI."""
    return APIRouter(prefix=API_PREFIX, tags=list(tags), responses=dict(_ERRORS))
