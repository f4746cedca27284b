"""CSRF protection: a per-session token echoed by forms (``csrf_token``) or htmx (``X-CSRF-Token``).

The session cookie is SameSite=Lax, which already stops most cross-site POSTs; the token closes the
rest (same-site subdomains, old browsers). Requests authenticated with a Bearer token are exempt: a
browser never attaches that header cross-site, and such requests ignore the session cookie entirely.
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import Request

from app.errors import CsrfFailed
from app.security.sessions import CSRF_KEY
from app.security.tokens import bearer_token

CSRF_FORM_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def csrf_token(request: Request) -> str:
    """The session's CSRF token, created on first use (anonymous visitors get one for login)."""
    token = request.session.get(CSRF_KEY)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        request.session[CSRF_KEY] = token
    return token


async def verify_csrf(request: Request) -> None:
    """Router-wide dependency: refuse state-changing requests that lack the session's token."""
    if request.method in SAFE_METHODS:
        return
    if bearer_token(request.headers.get("Authorization")):
        return
    expected = request.session.get(CSRF_KEY) if "session" in request.scope else None
    supplied = request.headers.get(CSRF_HEADER)
    content_type = request.headers.get("content-type", "")
    if not supplied and content_type.startswith(_FORM_TYPES):
        form = await request.form()  # Starlette caches it; the route reuses the parsed form
        value = form.get(CSRF_FORM_FIELD)
        supplied = value if isinstance(value, str) else None
    if not isinstance(expected, str) or not supplied:
        raise CsrfFailed("Missing CSRF token; reload the page and try again.")
    if not hmac.compare_digest(expected.encode(), supplied.encode()):
        raise CsrfFailed("Invalid CSRF token; reload the page and try again.")
