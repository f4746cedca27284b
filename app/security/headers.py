"""Security headers on every response, with a per-request CSP nonce for inline scripts.

Pages may use ``<script nonce="{{ csp_nonce }}">``; everything else must come from ``/static``.
Inline event handlers (``onclick=``) and htmx's ``hx-on`` (which evaluates strings) are refused by
this policy on purpose: put behaviour in ``static/*.js``.
"""

from __future__ import annotations

import secrets

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

NONCE_SCOPE_KEY = "tapestry.csp_nonce"


def content_security_policy(nonce: str) -> str:
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self' 'nonce-{nonce}'",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


class SecurityHeadersMiddleware:
    """Adds the headers to every response. Installed *outside* Starlette's error middleware
    (:func:`with_security_headers`), so a 500 from an unhandled error carries them too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(16)
        scope.setdefault("state", {})[NONCE_SCOPE_KEY] = nonce

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("Referrer-Policy", "same-origin")
                headers.setdefault("Content-Security-Policy", content_security_policy(nonce))
            await send(message)

        await self.app(scope, receive, send_with_headers)


class SecuredFastAPI(FastAPI):
    """FastAPI whose outermost layer is :class:`SecurityHeadersMiddleware`.

    ``add_middleware`` places middleware inside ``ServerErrorMiddleware``, which renders the 500
    of an unhandled error with the ``send`` it was given, past every user middleware; wrapping
    the whole stack instead puts the headers on that response as well.
    """

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeadersMiddleware(super().build_middleware_stack())
