"""The application factory. ``uvicorn app.main:create_app --factory`` serves it.

To add pages or API endpoints, write a module that exposes ``router``, import it here and add
ONE line to :data:`ROUTERS` (plain imports, so tools and the import-graph test follow them).
Every router gets the CSRF check; each route declares its own access rule through its parameters
(see :mod:`app.deps`), and ``tests/app/test_route_access.py`` walks them all.

This module (and everything it imports) must never import torch, transformers or peft.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from app import health
from app.api import adapters as api_adapters
from app.api import agreement as api_agreement
from app.api import annotations as api_annotations
from app.api import data_manager as api_data_manager
from app.api import gold as api_gold
from app.api import interop as api_interop
from app.api import items as api_items
from app.api import live_head as api_live_head
from app.api import metrics as api_metrics
from app.api import model_versions as api_model_versions
from app.api import predict as api_predict
from app.api import project_settings as api_project_settings
from app.api import projects as api_projects
from app.api import queue as api_queue
from app.api import review as api_review
from app.api import runs as api_runs
from app.api.common import enforce_write_rate_limit
from app.api_docs import install_api_docs
from app.config import Settings, get_settings
from app.db.session import get_engine, session_factory
from app.error_handlers import install_error_handlers
from app.maintenance import lifespan
from app.security.csrf import verify_csrf
from app.security.headers import SecuredFastAPI
from app.security.limits import BodySizeLimitMiddleware
from app.security.sessions import add_session_middleware
from app.web import admin as web_admin
from app.web import annotate as web_annotate
from app.web import auth as web_auth
from app.web import dashboard as web_dashboard
from app.web import data_manager as web_data_manager
from app.web import gold as web_gold
from app.web import imports as web_imports
from app.web import project_models as web_project_models
from app.web import project_runs as web_project_runs
from app.web import project_settings as web_project_settings
from app.web import projects as web_projects
from app.web import review as web_review
from app.web.templating import STATIC_DIR

# Every router, in inclusion order. Add one import above and one line here per new module.
ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    web_auth.router,
    web_projects.router,
    web_project_settings.router,
    web_imports.router,
    web_annotate.router,
    web_dashboard.router,
    web_admin.router,
    web_project_runs.router,
    web_project_models.router,
    web_data_manager.router,
    web_gold.router,
    web_review.router,
    api_projects.router,
    api_items.router,
    api_adapters.router,
    api_predict.router,
    api_project_settings.router,
    api_annotations.router,
    api_interop.router,
    api_queue.router,
    api_runs.router,
    api_model_versions.router,
    api_metrics.router,
    api_live_head.router,
    api_data_manager.router,
    api_gold.router,
    api_review.router,
    api_agreement.router,
)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.ensure_dirs()  # secret key, embedded broker and artifacts live there
    app = SecuredFastAPI(
        title="Tapestry",
        version="0.1.0",
        docs_url=None,  # app.api_docs: served without a CDN
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
    for router in ROUTERS:
        app.include_router(router, dependencies=guards)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    install_api_docs(app)
    return app
