"""Typed FastAPI dependencies: the database session, settings, and the ONE access-control layer.

Every route declares exactly one access rule through its parameters, and that declaration is also
what the route-access test reads (``access_rule`` on the dependency):

* ``OptionalUser`` — public route (login page, health); knows the user when there is one.
* ``CurrentUser`` / ``LeadUser`` / ``AdminUser`` — signed in, with a minimum *global* role.
* ``ProjectReader`` / ``ProjectAnnotator`` / ``ProjectReviewer`` / ``ProjectLead`` /
  ``ProjectAdmin`` — loads the project
  from the ``project_id`` path parameter and checks membership. Admins see every project. A
  project the caller cannot see answers 404 exactly like a missing one (no existence leak); a
  member below the required level gets 403.

API tokens cap what their user may do: scope ``read`` < ``annotate`` (labelling and reviewing) <
``admin``; a token bound to one project sees only that project. Routes never repeat these checks.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from functools import cache
from typing import Annotated, Literal

from fastapi import Depends, Path, Request
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import (
    ROLE_ADMIN,
    ROLE_ANNOTATOR,
    ROLE_LEAD,
    ROLE_REVIEWER,
    SCOPE_ADMIN,
    SCOPE_ANNOTATE,
    SCOPE_READ,
    ApiToken,
    Membership,
    Project,
    User,
)
from app.domain.users import authenticate_token
from app.errors import AuthenticationRequired, PermissionDenied, ProjectNotFound
from app.security.sessions import password_fingerprint, session_user
from app.security.tokens import bearer_token


class Level(IntEnum):
    """What a caller may do, ordered: every level includes the ones below it."""

    READ = 1
    ANNOTATE = 2
    REVIEW = 3
    """Adjudicate labels in the review queue (project role ``reviewer``; leads and admins too)."""
    LEAD = 4
    ADMIN = 5


GLOBAL_ROLE_LEVEL = {ROLE_ANNOTATOR: Level.ANNOTATE, ROLE_LEAD: Level.LEAD, ROLE_ADMIN: Level.ADMIN}
PROJECT_ROLE_LEVEL = {
    ROLE_ANNOTATOR: Level.ANNOTATE, ROLE_REVIEWER: Level.REVIEW, ROLE_LEAD: Level.LEAD
}
SCOPE_LEVEL = {SCOPE_READ: Level.READ, SCOPE_ANNOTATE: Level.REVIEW, SCOPE_ADMIN: Level.ADMIN}
LEVEL_NAMES: dict[str, Level] = {
    "read": Level.READ,
    "annotate": Level.ANNOTATE,
    "annotator": Level.ANNOTATE,
    "review": Level.REVIEW,
    "reviewer": Level.REVIEW,
    "lead": Level.LEAD,
    "admin": Level.ADMIN,
}


@dataclass(frozen=True)
class AccessRule:
    """Declared on each access dependency; the route-access test reads it from ``app.routes``."""

    scope: Literal["public", "user", "project"]
    level: Level | None = None


# --------------------------------------------------------------------------- session & settings


async def get_settings_dep(request: Request) -> Settings:  # async: no worker thread for a read
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def get_db(request: Request) -> Iterator[Session]:
    """One session per request; the edge owns the transaction: commit on success, else roll back.

    Declared with ``scope="function"`` so the commit happens before the response is sent: a
    failed commit becomes an error response instead of a success the database never saw.
    """
    session: Session = request.app.state.session_factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_db, scope="function")]


# --------------------------------------------------------------------------- request slots

_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


async def annotator_slot(request: Request) -> AsyncIterator[None]:
    """Run at most ``annotator_concurrency`` annotator-view requests at once, first come first
    served; the others wait here, on the event loop, before any of their work starts.

    Those requests are short and CPU-bound, and Python threads share one interpreter lock: twenty
    of them in flight together take turns in slices of up to 5 ms, so each one, and the SQLite
    writer holding the write lock among them, finishes late. In arrival order each one runs at
    full speed (measured in ``tests/benchmarks/bench_web.py``). Waiting costs no thread.
    """
    loop = asyncio.get_running_loop()
    slots = _slots.get(loop)
    if slots is None:
        slots = _slots[loop] = asyncio.Semaphore(request.app.state.settings.annotator_concurrency)
    async with slots:
        yield


AnnotatorSlot = Depends(annotator_slot, scope="function")


# --------------------------------------------------------------------------- principal


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user, through a session cookie or an API token."""

    user: User
    token: ApiToken | None = None

    @property
    def via_token(self) -> bool:
        return self.token is not None

    @property
    def is_admin(self) -> bool:
        return self.user.role == ROLE_ADMIN and self.token_cap >= Level.ADMIN

    @property
    def token_cap(self) -> Level:
        """The most a token allows (a session is uncapped)."""
        if self.token is None:
            return Level.ADMIN
        levels = [SCOPE_LEVEL[s] for s in self.token.scopes if s in SCOPE_LEVEL]
        return max(levels, default=Level.READ)

    @property
    def global_level(self) -> Level:
        return min(GLOBAL_ROLE_LEVEL.get(self.user.role, Level.READ), self.token_cap)

    @property
    def bound_project_id(self) -> int | None:
        return self.token.project_id if self.token is not None else None


@dataclass(frozen=True)
class UserView:
    """The few user fields pages show, copied while the request's session is open."""

    id: int
    email: str
    name: str
    role: str


@dataclass(frozen=True)
class PrincipalView:
    """What templates see as ``principal``: plain values, safe after the session has closed.

    Error pages render after the request's transaction has ended (rolled back, session closed);
    reading an ORM row there raises ``DetachedInstanceError`` and turned every error page into a
    500. Templates therefore never get the ORM ``User``, only this copy.
    """

    user: UserView
    via_token: bool

    @property
    def is_admin(self) -> bool:
        return self.user.role == ROLE_ADMIN

    @classmethod
    def of(cls, principal: Principal) -> PrincipalView:
        user = principal.user
        return cls(
            user=UserView(id=user.id, email=user.email, name=user.name, role=user.role),
            via_token=principal.via_token,
        )


PRINCIPAL_VIEW_STATE = "principal_view"
"""``request.state`` attribute holding the caller's :class:`PrincipalView` (or None)."""


def get_principal(request: Request, db: SessionDep) -> Principal | None:
    """Resolve the caller once per request: a Bearer token wins over the session cookie."""
    if hasattr(request.state, "principal"):
        cached: Principal | None = request.state.principal
        return cached
    principal = _resolve_principal(request, db)
    request.state.principal = principal
    view = PrincipalView.of(principal) if principal is not None else None
    setattr(request.state, PRINCIPAL_VIEW_STATE, view)
    return principal


def _resolve_principal(request: Request, db: Session) -> Principal | None:
    raw_token = bearer_token(request.headers.get("Authorization"))
    if raw_token is not None:
        token, token_user = authenticate_token(db, raw_token, now=datetime.now(UTC))
        return Principal(user=token_user, token=token)
    claim = session_user(request)
    if claim is None:
        return None
    user = db.get(User, claim.user_id)
    if user is None or not user.is_active:
        return None
    if password_fingerprint(user.password_hash) != claim.fingerprint:
        return None  # the password changed since this session started
    if user.session_generation != claim.generation:
        return None  # the user signed out since: every cookie of theirs was revoked
    return Principal(user=user)


PrincipalDep = Annotated[Principal | None, Depends(get_principal)]


def _require_principal(principal: Principal | None) -> Principal:
    if principal is None:
        raise AuthenticationRequired("Please sign in.")
    return principal


# --------------------------------------------------------------------------- declared access rules


def public_access(principal: PrincipalDep) -> Principal | None:
    """A public route. Returns the caller when signed in, so pages can adapt."""
    return principal


public_access.access_rule = AccessRule("public")  # type: ignore[attr-defined]


@cache
def require_role(role: str) -> Callable[..., Principal]:
    """Signed in with at least global ``role`` ("any", "annotator", "lead" or "admin")."""
    needed = Level.READ if role == "any" else _level(role)

    def dependency(principal: PrincipalDep) -> Principal:
        caller = _require_principal(principal)
        if needed > Level.READ and caller.bound_project_id is not None:
            raise PermissionDenied("This API token is limited to one project.")
        if caller.global_level < needed:
            raise PermissionDenied(f"This needs the {role} role.")
        return caller

    dependency.access_rule = AccessRule("user", needed)  # type: ignore[attr-defined]
    dependency.__name__ = f"require_role_{role}"
    return dependency


@dataclass(frozen=True)
class ProjectContext:
    """A project the caller may act on, with the level they act at."""

    project: Project
    principal: Principal
    level: Level
    role_level: Level | None = None
    """The level the user's roles give, before any token cap (None: same as ``level``)."""

    @property
    def user(self) -> User:
        return self.principal.user

    def can(self, level: Level) -> bool:
        return self.level >= level

    @property
    def sees_others_labels(self) -> bool:
        """Reviewers, leads and admins read every annotator's labels; an annotator only their
        own (so nobody is swayed by a teammate's label before giving theirs). Decided by the
        user's roles: a lead's read-only token still exports the whole project."""
        return (self.role_level or self.level) >= Level.REVIEW


MAX_DB_INT = 2_147_483_647
"""Ids and counters are 32-bit integers in every supported database: any integer a request
carries is bounded by this, so a larger one is a 422, never a 500 from the database driver."""
# Larger path values are a 422, not a 500.
ProjectIdPath = Annotated[int, Path(ge=1, le=MAX_DB_INT)]
IdPath = Annotated[int, Path(ge=1, le=MAX_DB_INT)]
"""Any other id in a path (user, run, version, token, item, annotation)."""


# The project and the caller's membership in one round trip, built once (every project route).
_PROJECT_AND_ROLE = (
    select(Project, Membership.role)
    .outerjoin(
        Membership,
        (Membership.project_id == Project.id) & (Membership.user_id == bindparam("a_user")),
    )
    .where(Project.id == bindparam("a_project"))
)


class ProjectAccess:
    """Load ``project_id`` and check the caller's level on it (404 when they may not see it)."""

    def __init__(self, level: str) -> None:
        self.level = _level(level)
        self.access_rule = AccessRule("project", self.level)

    def __call__(
        self, project_id: ProjectIdPath, principal: PrincipalDep, db: SessionDep
    ) -> ProjectContext:
        caller = _require_principal(principal)
        if caller.bound_project_id is not None and caller.bound_project_id != project_id:
            raise ProjectNotFound(project_id)
        row = db.execute(
            _PROJECT_AND_ROLE, {"a_project": project_id, "a_user": caller.user.id}
        ).first()
        if row is None:
            raise ProjectNotFound(project_id)
        project, role = row
        level = _effective_level(caller, role)
        if level is None:
            raise ProjectNotFound(project_id)
        if level < self.level:
            needed = self.level.name.lower()
            raise PermissionDenied(f"This needs the {needed} level on the project.")
        role_level = _effective_level(Principal(user=caller.user), role)
        return ProjectContext(project=project, principal=caller, level=level,
                              role_level=role_level)


def _effective_level(principal: Principal, membership_role: str | None) -> Level | None:
    """Admins see every project; others see the ones they are members of; tokens cap both.

    Worked out on every request from the user's *current* global role and membership: a project
    role never exceeds the global one, so a lead demoted to annotator keeps annotating their
    projects but no longer leads them, through old sessions and tokens alike.
    """
    if principal.user.role == ROLE_ADMIN:
        base: Level | None = Level.ADMIN
    else:
        base = PROJECT_ROLE_LEVEL.get(membership_role) if membership_role is not None else None
    if base is None:
        return None
    global_cap = GLOBAL_ROLE_LEVEL.get(principal.user.role, Level.READ)
    if membership_role == ROLE_REVIEWER:
        # Reviewing is project work any active account can be given; the global role caps lead
        # powers only (a demoted lead with a lead membership still drops to annotator).
        global_cap = max(global_cap, Level.REVIEW)
    return min(base, global_cap, principal.token_cap)


def _level(name: str) -> Level:
    try:
        return LEVEL_NAMES[name]
    except KeyError:
        known = sorted(LEVEL_NAMES)
        raise ValueError(f"Unknown access level {name!r}; use one of {known}") from None


OptionalUser = Annotated[Principal | None, Depends(public_access)]
CurrentUser = Annotated[Principal, Depends(require_role("any"))]
AnnotatorUser = Annotated[Principal, Depends(require_role("annotator"))]
LeadUser = Annotated[Principal, Depends(require_role("lead"))]
AdminUser = Annotated[Principal, Depends(require_role("admin"))]

ProjectReader = Annotated[ProjectContext, Depends(ProjectAccess("read"))]
ProjectAnnotator = Annotated[ProjectContext, Depends(ProjectAccess("annotate"))]
ProjectReviewer = Annotated[ProjectContext, Depends(ProjectAccess("review"))]
ProjectLead = Annotated[ProjectContext, Depends(ProjectAccess("lead"))]
ProjectAdmin = Annotated[ProjectContext, Depends(ProjectAccess("admin"))]
