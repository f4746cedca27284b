"""Domain errors and the one place that turns them into HTTP responses.

Domain code raises these (never ``HTTPException``); :func:`install_error_handlers` maps each to

* ``/api/...``: JSON ``{"error": {"code", "message", "details"}}`` with the error's status;
* an htmx request (``HX-Request: true``): the status plus an ``HX-Trigger`` header carrying a
  ``toast`` event that ``static/app.js`` shows; an unauthenticated one gets ``HX-Redirect``
  to the login page;
* any other web request: the HTML error page, or a 303 to the login page when not signed in.

Every mapped response carries ``X-Tapestry-Error: <code>`` so tests (and people with curl) can tell
an access denial from a route's own "not found" without parsing bodies.
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

log = logging.getLogger(__name__)

ERROR_HEADER = "X-Tapestry-Error"
API_PREFIX = "/api/"


class DomainError(Exception):
    """Base of every error the domain reports to a user. Subclasses fix ``code`` and ``status``."""

    code = "error"
    status_code = 400

    def __init__(self, message: str, *, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})


class InvalidInput(DomainError):
    code = "invalid_input"
    status_code = 422


class NotFound(DomainError):
    code = "not_found"
    status_code = 404


class ProjectNotFound(NotFound):
    """Raised for missing projects and for projects the caller may not see (no existence leak)."""

    code = "project_not_found"

    def __init__(self, project_id: int | None = None) -> None:
        super().__init__("Project not found.", details={"project_id": project_id})


class AuthenticationRequired(DomainError):
    code = "authentication_required"
    status_code = 401


class PermissionDenied(DomainError):
    code = "forbidden"
    status_code = 403


class CsrfFailed(DomainError):
    code = "csrf_failed"
    status_code = 403


class Conflict(DomainError):
    code = "conflict"
    status_code = 409


class Gone(DomainError):
    code = "gone"
    status_code = 410


class PayloadTooLarge(DomainError):
    code = "payload_too_large"
    status_code = 413


class ImportRejected(DomainError):
    """A data import that was refused as a whole; ``details`` lists the offending lines."""

    code = "import_rejected"
    status_code = 422


class NotSupported(DomainError):
    code = "not_supported"
    status_code = 501


class ServiceBusy(DomainError):
    """The database stayed locked by other work for too long; nothing was written. Retry."""

    code = "busy"
    status_code = 503


# Codes that mean "the access layer said no" (used by the route-access test and the web handler).
ACCESS_DENIAL_CODES = frozenset(
    {AuthenticationRequired.code, PermissionDenied.code, ProjectNotFound.code}
)


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
    from app.web.templating import render_page  # local: keeps errors importable without Jinja

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
