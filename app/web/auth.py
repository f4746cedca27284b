"""Sign in and out. The login form is CSRF-protected too (the anonymous session carries a token)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from app.deps import CurrentUser, OptionalUser, SessionDep
from app.domain.users import authenticate_password
from app.errors import AuthenticationRequired
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
    try:
        user = authenticate_password(db, email, password)
    except AuthenticationRequired as exc:
        context = {"next": safe_next(next), "error": exc.message, "email": email}
        return render_page(request, "login.html", context, status_code=401)
    start_session(request, user.id, user.password_hash)
    return RedirectResponse(safe_next(next), status_code=303)


@router.post("/logout")
def logout(request: Request, _caller: CurrentUser) -> RedirectResponse:
    end_session(request)
    flash(request, "Signed out.")
    return RedirectResponse("/login", status_code=303)
