"""Jinja2 rendering: one template serves as a full page or, for htmx, as just its ``content`` block.

Autoescaping is on for every template: user text is data, never markup. Pages extend
``templates/base.html`` (blocks ``title``, ``nav``, ``content``, ``scripts``).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from app.assets import asset_path
from app.deps import PRINCIPAL_VIEW_STATE
from app.security.csrf import CSRF_FORM_FIELD, CSRF_HEADER, csrf_token
from app.security.headers import NONCE_SCOPE_KEY
from contract import budget

TEMPLATES_DIR = asset_path("templates")
STATIC_DIR = asset_path("static")
_FLASH_KEY = "flash"


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["csrf_field_name"] = CSRF_FORM_FIELD
    env.globals["csrf_header_name"] = CSRF_HEADER
    env.globals["budget_bounds"] = budget_bounds()
    return env


def budget_bounds() -> dict[str, float]:
    """The budget form's input bounds, the ones :class:`app.domain.policy.BudgetSettings` checks
    (the settings page and the dashboard render the same form). The label budget's 10 million
    is left to the server, whose message says what the bound is."""
    return {"batch_size": budget.MAX_BATCH_SIZE,
            "reserve_percent": budget.MAX_RESERVE_FRACTION * 100,
            "stop_threshold": budget.MAX_STOP_THRESHOLD}


def flash(request: Request, message: str, level: str = "info") -> None:
    """Queue a one-time message for the next rendered page (kept in the signed session)."""
    messages = list(request.session.get(_FLASH_KEY, []))
    messages.append({"level": level, "message": message})
    request.session[_FLASH_KEY] = messages[-5:]


def _pop_flashes(request: Request) -> list[dict[str, str]]:
    if "session" not in request.scope:
        return []
    return list(request.session.pop(_FLASH_KEY, []) or [])


def base_context(request: Request) -> dict[str, Any]:
    has_session = "session" in request.scope
    return {
        "request": request,
        # A plain copy (app.deps.PrincipalView), never the ORM user: error pages render after
        # the request's session has closed.
        "principal": getattr(request.state, PRINCIPAL_VIEW_STATE, None),
        "csrf_token": csrf_token(request) if has_session else "",
        "csp_nonce": request.scope.get("state", {}).get(NONCE_SCOPE_KEY, ""),
        "flashes": _pop_flashes(request),
    }


def is_partial_request(request: Request) -> bool:
    """htmx swaps (not boosted navigation, not history restore) want only the content block."""
    headers = request.headers
    return (
        headers.get("HX-Request", "").lower() == "true"
        and headers.get("HX-Boosted", "").lower() != "true"
        and headers.get("HX-History-Restore-Request", "").lower() != "true"
    )


def render_page(
    request: Request,
    name: str,
    context: Mapping[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
    block: str | None = None,
) -> HTMLResponse:
    """Render ``name`` as a page, or only ``block`` (default: ``content`` for htmx swaps)."""
    ctx = base_context(request) | dict(context or {})
    template = environment().get_template(name)
    if block is None and is_partial_request(request) and "content" in template.blocks:
        block = "content"
    if block is None:
        html = template.render(ctx)
    else:
        html = "".join(template.blocks[block](template.new_context(ctx)))
    return HTMLResponse(html, status_code=status_code, headers=dict(headers or {}))
