"""Domain errors: what went wrong, with a stable ``code`` and the HTTP status it maps to.

Domain code raises these (never ``HTTPException``). This module imports no web framework, so
domain, security and worker code can raise them without pulling in the web layer;
:func:`app.error_handlers.install_error_handlers` maps each to

* ``/api/...``: JSON ``{"error": {"code", "message", "details"}}`` with the error's status;
* an htmx request (``HX-Request: true``): the status plus an ``HX-Trigger`` header carrying a
  ``toast`` event that ``static/app.js`` shows; an unauthenticated one gets ``HX-Redirect``
  to the login page;
* any other web request: the HTML error page, or a 303 to the login page when not signed in.

Every mapped response carries ``X-Tapestry-Error: <code>`` so tests (and people with curl) can tell
an access denial from a route's own "not found" without parsing bodies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ERROR_HEADER = "X-Tapestry-Error"


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
