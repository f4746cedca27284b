"""Sign in and out. The login form is CSRF-protected too (the anonymous session carries a token).

Sign-in is throttled per account and per client address before any password is hashed
(:mod:`app.security.login_throttle`); signing out revokes the user's session cookies on the
server (:func:`app.domain.users.end_all_sessions`), so a copied cookie stops working.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from app.deps import CurrentUser, OptionalUser, SessionDep
from app.domain.users import authenticate_password, end_all_sessions
from app.errors import ERROR_HEADER, AuthenticationRequired
from app.security.login_throttle import account_key, address_key, login_throttle
from app.security.sessions import end_session, start_session
from app.web.templating import flash, render_page

router = APIRouter(tags=["web"], include_in_schema=False)


def safe_next(target: str | None) -> str:
    """Only local paths: an open redirect after login would be a phishing gift."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/projects"
    return target


@router.get("/")
def home(caller: OptionalUser) -> RedirectResponse:
    return RedirectResponse("/projects" if caller else "/login", status_code=303)


@router.get("/favicon.ico", include_in_schema=False)
def favicon(_caller: OptionalUser) -> RedirectResponse:
    """Tools and old browsers ask for ``/favicon.ico`` whatever the page's ``<link rel=icon>``
    says; they get the same icon."""
    return RedirectResponse("/static/favicon.svg", status_code=301)


@router.get("/login")
def login_page(request: Request, caller: OptionalUser, next: str = "/projects") -> Response:
    if caller is not None and not caller.via_token:
        return RedirectResponse(safe_next(next), status_code=303)
    return render_page(request, "login.html", {"next": safe_next(next), "error": None, "email": ""})


@router.post("/login")
def login(
    request: Request,
    db: SessionDep,
    _caller: OptionalUser,
    email: Annotated[str, Form(max_length=320)],
    password: Annotated[str, Form(max_length=1000)],
    next: Annotated[str, Form()] = "/projects",
) -> Response:
    throttle = login_throttle(request)
    account, address = account_key(email), address_key(request)
    wait = throttle.retry_after(account, address)
    if wait:
        minutes = max(1, round(wait / 60))
        message = (f"Too many failed sign-ins. Try again in about {minutes} minute"
                   f"{'s' if minutes != 1 else ''}.")
        context = {"next": safe_next(next), "error": message, "email": email}
        return render_page(request, "login.html", context, status_code=429,
                           headers={"Retry-After": str(wait), ERROR_HEADER: "rate_limited"})
    try:
        user = authenticate_password(db, email, password)
    except AuthenticationRequired as exc:
        throttle.failed(account, address)
        context = {"next": safe_next(next), "error": exc.message, "email": email}
        return render_page(request, "login.html", context, status_code=401)
    throttle.succeeded(account)
    start_session(request, user.id, user.password_hash, user.session_generation)
    return RedirectResponse(safe_next(next), status_code=303)


@router.post("/logout")
def logout(request: Request, db: SessionDep, caller: CurrentUser) -> RedirectResponse:
    if not caller.via_token:
        end_all_sessions(db, caller.user)
    end_session(request)
    flash(request, "Signed out.")
    return RedirectResponse("/login", status_code=303)
