"""The signed session cookie (Starlette's itsdangerous-based middleware) and what we keep in it.

The cookie holds only: the user id, a fingerprint of the user's password hash (changing the password
ends every other session), the user's session generation (signing out increments it on the server,
so a copied cookie stops working), and the CSRF token. It is HttpOnly, SameSite=Lax, Secure on HTTPS
deployments, and signed with a key derived from the application secret, so the secret itself never
signs anything else directly.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from base64 import b64encode
from dataclasses import dataclass
from typing import Any

import itsdangerous
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import HTTPConnection

SESSION_COOKIE = "tapestry_session"
_USER_KEY = "uid"
_FINGERPRINT_KEY = "pwf"
_GENERATION_KEY = "gen"
CSRF_KEY = "csrf"


def derive_key(secret: str, purpose: str) -> str:
    return hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).hexdigest()


def session_signing_key(secret: str) -> str:
    return derive_key(secret, "tapestry.session.v1")


def add_session_middleware(
    app: Any, *, secret: str, max_age: int, https_only: bool
) -> None:
    app.add_middleware(
        SessionMiddleware,
        secret_key=session_signing_key(secret),
        session_cookie=SESSION_COOKIE,
        max_age=max_age,
        same_site="lax",
        https_only=https_only,
    )


def password_fingerprint(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def start_session(
    connection: HTTPConnection, user_id: int, password_hash: str, generation: int = 0
) -> None:
    """Replace the session (no fixation): new CSRF token, user id, password fingerprint and the
    user's current session generation."""
    connection.session.clear()
    connection.session[_USER_KEY] = user_id
    connection.session[_FINGERPRINT_KEY] = password_fingerprint(password_hash)
    connection.session[_GENERATION_KEY] = generation
    connection.session[CSRF_KEY] = secrets.token_urlsafe(32)


def end_session(connection: HTTPConnection) -> None:
    connection.session.clear()
    connection.session[CSRF_KEY] = secrets.token_urlsafe(32)


@dataclass(frozen=True)
class SessionClaim:
    """What a session cookie says about its user; :mod:`app.deps` checks it against the row."""

    user_id: int
    fingerprint: str
    generation: int


def session_user(connection: HTTPConnection) -> SessionClaim | None:
    """The claim of a signed-in session, else None."""
    if "session" not in connection.scope:
        return None
    user_id = connection.session.get(_USER_KEY)
    fingerprint = connection.session.get(_FINGERPRINT_KEY)
    generation = connection.session.get(_GENERATION_KEY, 0)
    if not isinstance(user_id, int) or not isinstance(fingerprint, str):
        return None
    if not isinstance(generation, int) or isinstance(generation, bool):
        return None
    return SessionClaim(user_id, fingerprint, generation)


def encode_session_cookie(secret: str, data: dict[str, Any]) -> str:
    """The cookie value the middleware would set for ``data`` (tests sign users in with it)."""
    signer = itsdangerous.TimestampSigner(session_signing_key(secret))
    payload = b64encode(json.dumps(data).encode("utf-8"))
    return signer.sign(payload).decode("utf-8")


def session_data(
    user_id: int, password_hash: str, csrf: str, generation: int = 0
) -> dict[str, Any]:
    return {
        _USER_KEY: user_id,
        _FINGERPRINT_KEY: password_fingerprint(password_hash),
        _GENERATION_KEY: generation,
        CSRF_KEY: csrf,
    }

