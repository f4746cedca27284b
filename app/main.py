"""The application factory. ``uvicorn app.main:create_app --factory`` serves it.

To add pages or API endpoints, write a module that exposes ``router`` and add ONE line to
:data:`ROUTERS`. Every router gets the CSRF check; each route declares its own access rule through
its parameters (see :mod:`app.deps`), and ``tests/app/test_route_access.py`` walks them all.

This module (and everything it imports) must never import torch, transformers or peft.
"""

from __future__ import annotations

import importlib

from fastapi import APIRouter, Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from app.api.common import enforce_write_rate_limit
from app.config import Settings, get_settings
from app.db.session import get_engine, session_factory
from app.error_handlers import install_error_handlers
from app.maintenance import lifespan
from app.security.csrf import verify_csrf
from app.security.headers import SecuredFastAPI
from app.security.limits import BodySizeLimitMiddleware
from app.security.sessions import add_session_middleware
from app.web.templating import STATIC_DIR

# Modules exposing ``router``, in inclusion order. Add one line per new module.
ROUTERS: tuple[str, ...] = (
    "app.health",
    "app.web.auth",
    "app.web.projects",
    "app.web.project_settings",
    "app.web.imports",
    "app.web.annotate",
    "app.web.dashboard",
    "app.web.admin",
    "app.web.project_runs",
    "app.web.project_models",
    "app.web.data_manager",
    "app.web.gold",
    "app.api.projects",
    "app.api.items",
    "app.api.adapters",
    "app.api.predict",
    "app.api.project_settings",
    "app.api.annotations",
    "app.api.interop",
    "app.api.queue",
    "app.api.runs",
    "app.api.model_versions",
    "app.api.metrics",
    "app.api.live_head",
    "app.api.data_manager",
    "app.api.gold",
)


def load_router(module_name: str) -> APIRouter:
    module = importlib.import_module(module_name)
    router = getattr(module, "router", None)
    if not isinstance(router, APIRouter):
        raise TypeError(f"{module_name} must define `router = APIRouter(...)` to be in ROUTERS")
    return router


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.ensure_dirs()  # secret key, embedded broker and artifacts live there
    app = SecuredFastAPI(
        title="Tapestry",
        version="0.1.0",
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
        swagger_ui_oauth2_redirect_url=None,
        lifespan=lifespan,  # the reaper and token-use writer (app.maintenance)
    )
    engine = get_engine(settings)
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = session_factory(engine)

    install_error_handlers(app)
    # Added innermost first: sessions wrap the body limit wrap the routes. The security headers
    # wrap everything, Starlette's 500 handler included (SecuredFastAPI).
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_upload_bytes)
    add_session_middleware(
        app,
        secret=settings.resolved_secret_key(),
        max_age=settings.session_max_age_seconds,
        https_only=settings.cookie_secure,
    )

    # Every route: the CSRF check, and the write rate limit on state-changing methods.
    guards = [Depends(verify_csrf), Depends(enforce_write_rate_limit)]
    for module_name in ROUTERS:
        app.include_router(load_router(module_name), dependencies=guards)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
