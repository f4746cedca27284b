"""The one place that turns errors into HTTP responses (the types live in :mod:`app.errors`).

:func:`install_error_handlers` maps a :class:`~app.errors.DomainError`, a request validation error,
an HTTP exception or an unexpected exception to JSON for ``/api/...``, an ``HX-Trigger`` toast for
htmx requests, or the HTML error page (a 303 to the login page when not signed in).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.errors import ERROR_HEADER, DomainError
from app.web.templating import render_page

log = logging.getLogger(__name__)

API_PREFIX = "/api/"


def is_api_request(request: Request) -> bool:
    return request.url.path.startswith(API_PREFIX)


def is_htmx_request(request: Request) -> bool:
    return request.headers.get("HX-Request", "").lower() == "true"


def error_body(code: str, message: str, details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": dict(details or {})}}


def render_error(
    request: Request,
    *,
    status_code: int,
    code: str,
    message: str,
    details: Mapping[str, Any] | None = None,
) -> Response:
    """Build the response for an error in the form the caller understands (JSON, toast or page)."""
    headers = {ERROR_HEADER: code}
    if is_api_request(request):
        if status_code == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return JSONResponse(
            error_body(code, message, details), status_code=status_code, headers=headers
        )
    login_url = "/login?next=" + quote(_next_target(request), safe="/")
    if is_htmx_request(request):
        if status_code == 401:
            headers["HX-Redirect"] = login_url
        headers["HX-Trigger"] = json.dumps({"toast": {"level": "error", "message": message}})
        return Response(status_code=status_code, headers=headers)
    if status_code == 401:
        return RedirectResponse(login_url, status_code=303, headers=headers)
    return render_page(
        request,
        "error.html",
        {"status_code": status_code, "code": code, "message": message, "details": details or {}},
        status_code=status_code,
        headers=headers,
    )


def _next_target(request: Request) -> str:
    if request.method != "GET":
        return "/"
    path = request.url.path
    return path + ("?" + request.url.query if request.url.query else "")


async def _domain_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    return render_error(
        request,
        status_code=exc.status_code,
        code=exc.code,
        message=exc.message,
        details=exc.details,
    )


async def _validation_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = [
        {"loc": [str(part) for part in err.get("loc", ())], "message": err.get("msg", "")}
        for err in exc.errors()
    ]
    first = problems[0] if problems else {"loc": [], "message": "invalid request"}
    message = f"Invalid request: {'.'.join(first['loc'])}: {first['message']}"
    broken = next((err for err in exc.errors() if err.get("type") == "json_invalid"), None)
    if broken is not None:  # FastAPI's loc is ("body", character position)
        where = broken.get("loc", ())
        reason = str((broken.get("ctx") or {}).get("error", "")).strip()
        message = ("The request body is not valid JSON"
                   + (f" ({reason} at character {where[1]})" if len(where) > 1 and reason
                      else "") + ".")
    return render_error(
        request,
        status_code=422,
        code="invalid_request",
        message=message,
        details={"errors": problems},
    )


_HTTP_CODES = {
    401: "authentication_required",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    429: "rate_limited",
}


async def _http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else "Request failed."
    response = render_error(request, status_code=exc.status_code, code=code, message=message)
    for name, value in (exc.headers or {}).items():
        response.headers.setdefault(name, value)
    return response


async def _unexpected_error_handler(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return render_error(
        request,
        status_code=500,
        code="internal_error",
        message="Something went wrong on our side; the error has been logged.",
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers; the only place where errors become HTTP."""
    app.add_exception_handler(DomainError, _domain_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, _http_error_handler)
    app.add_exception_handler(Exception, _unexpected_error_handler)
