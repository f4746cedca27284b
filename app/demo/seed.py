"""Seed the demo: migrate, three users with fresh passwords, the ticket project and its data.

Idempotent: a second run resets the three demo passwords (printed again, once) and keeps the
project and its data. No password is ever stored anywhere but as an argon2 hash.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.migrate import upgrade
from app.db.models import ROLE_ADMIN, ROLE_ANNOTATOR, ROLE_LEAD, Project, User
from app.db.session import get_engine, session_scope
from app.demo.generate import LABELS, TICKETS_CSV
from app.domain.imports import ColumnMapping, ImportOptions, ImportReport, import_items
from app.domain.policy import BudgetSettings
from app.domain.projects import ProjectSettings, add_member, create_project
from app.domain.runs import request_retrain
from app.domain.users import create_user, get_user_by_email, set_password
from app.security.passwords import generate_password

DEMO_PROJECT = "Support tickets (demo)"
DEMO_USERS = (
    (ROLE_ADMIN, "demo-admin@tapestry.local", "Demo Admin"),
    (ROLE_LEAD, "demo-lead@tapestry.local", "Demo Lead"),
    (ROLE_ANNOTATOR, "demo-annotator@tapestry.local", "Demo Annotator"),
)
GUIDELINES = """Pick the category that the customer needs handled.
- Money taken or invoices: billing; money back: refund_request.
- Cannot get in: login_issue; cannot reset the password: password_reset.
- Something broken: bug_report; something slow: performance; something missing: feature_request.
- Leaving: account_cancellation. Suspicious access or compliance: security_concern.
- Getting data out: data_export; API, webhooks, third-party tools: integration_api.
- New customers asking how to start: onboarding_question."""


@dataclass(frozen=True)
class Credential:
    role: str
    email: str
    password: str


@dataclass(frozen=True)
class DemoSeed:
    project_id: int
    credentials: tuple[Credential, ...]
    report: ImportReport | None  # None when the project already existed


def seed_demo(settings: Settings) -> DemoSeed:
    settings.ensure_dirs()
    upgrade(settings.database_url)
    with session_scope(get_engine(settings)) as session:
        credentials = tuple(_ensure_user(session, role, email, name)
                            for role, email, name in DEMO_USERS)
        users = {c.role: get_user_by_email(session, c.email) for c in credentials}
        lead, annotator = users[ROLE_LEAD], users[ROLE_ANNOTATOR]
        assert lead is not None and annotator is not None
        project = session.scalar(select(Project).where(Project.name == DEMO_PROJECT))
        report = None
        if project is None:
            project, report = _create_project(session, lead, annotator)
        return DemoSeed(project_id=project.id, credentials=credentials, report=report)


def _ensure_user(session: Session, role: str, email: str, name: str) -> Credential:
    password = generate_password()
    user = get_user_by_email(session, email)
    if user is None:
        create_user(session, email=email, password=password, role=role, name=name)
    else:
        set_password(session, user, password)
        user.is_active = True
    return Credential(role=role, email=email, password=password)


def _create_project(session: Session, lead: User, annotator: User
                    ) -> tuple[Project, ImportReport]:
    project = create_project(session, creator=lead, settings=ProjectSettings(
        name=DEMO_PROJECT,
        labels=LABELS,
        description="Synthetic support tickets of a SaaS product, 12 categories "
                    "(bundled demo data: app/demo/tickets.csv).",
        guidelines=GUIDELINES,
        budget=BudgetSettings(label_budget=600, batch_size=50),
    ))
    add_member(session, project.id, email=annotator.email, role=ROLE_ANNOTATOR)
    options = ImportOptions(
        format="csv",
        mapping=ColumnMapping(text="text", label="label", id="id", split="split"),
    )
    with TICKETS_CSV.open("rb") as source:
        report = import_items(session, project=project, user=lead, source=source, options=options)
    if report.annotations:
        # A first model from the seed labels, so the annotator's queue shows the model's guess
        # and the nearest labelled tickets a few minutes in, not only after a whole batch.
        request_retrain(session, project, requested_by=lead,
                        reason="demo: first model from the imported seed labels")
    return project, report
