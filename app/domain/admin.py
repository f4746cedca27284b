"""Administration: user accounts and roles, project memberships, and every API token.

Account creation, passwords and token issuing live in :mod:`app.domain.users`; this module adds
what only admins do, with the guard rails that keep an installation manageable: an admin cannot
demote or deactivate themselves, and the last active admin cannot be removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import (
    PROJECT_ROLES,
    ROLE_ADMIN,
    ROLES,
    SCOPES,
    ApiToken,
    Membership,
    Project,
    User,
)
from app.domain import users as user_service
from app.domain.projects import (
    LEAD_CAPABLE_ROLES,
    LastLead,
    projects_led_only_by,
    remove_member,
    set_member_role,
)
from app.errors import Conflict, InvalidInput, NotFound
from app.security.passwords import generate_password

MAX_TOKEN_DAYS = 3650


@dataclass(frozen=True)
class UserRow:
    user: User
    projects: int
    active_tokens: int


@dataclass(frozen=True)
class NewAccount:
    """A created account and its one-time password (shown once, never stored in clear)."""

    user: User
    password: str


@dataclass(frozen=True)
class MembershipRow:
    project_id: int
    project_name: str
    role: str


@dataclass(frozen=True)
class TokenRow:
    token: ApiToken
    user_email: str
    project_name: str | None

    @property
    def state(self) -> str:
        if self.token.revoked_at is not None:
            return "revoked"
        expires = self.token.expires_at
        if expires is not None and expires <= datetime.now(UTC):
            return "expired"
        return "active"


def get_user(db: Session, user_id: int) -> User:
    user = db.get(User, user_id)
    if user is None:
        raise NotFound(f"User {user_id} does not exist.", details={"user_id": user_id})
    return user


def list_users(db: Session) -> list[UserRow]:
    projects = dict(
        db.execute(select(Membership.user_id, func.count()).group_by(Membership.user_id))
        .tuples()
        .all()
    )
    tokens = dict(
        db.execute(
            select(ApiToken.user_id, func.count())
            .where(ApiToken.revoked_at.is_(None))
            .group_by(ApiToken.user_id)
        ).tuples().all()
    )
    users = db.scalars(select(User).order_by(User.email))
    return [UserRow(u, projects.get(u.id, 0), tokens.get(u.id, 0)) for u in users]


def create_account(db: Session, *, email: str, name: str, role: str) -> NewAccount:
    """A new user with a generated password, to hand over once."""
    password = generate_password()
    user = user_service.create_user(db, email=email, password=password, role=role, name=name)
    return NewAccount(user=user, password=password)


def reset_password(db: Session, user_id: int) -> NewAccount:
    """A fresh generated password; the user's existing sessions end."""
    user = get_user(db, user_id)
    password = generate_password()
    user_service.set_password(db, user, password)
    return NewAccount(user=user, password=password)


def _other_active_admins(db: Session, user_id: int) -> int:
    return int(
        db.scalar(
            select(func.count())
            .select_from(User)
            .where(User.role == ROLE_ADMIN, User.is_active.is_(True), User.id != user_id)
        )
        or 0
    )


def set_role(db: Session, *, acting: User, user_id: int, role: str) -> User:
    if role not in ROLES:
        raise InvalidInput(f"Unknown role {role!r}; use one of {', '.join(ROLES)}.",
                           details={"field": "role"})
    user = get_user(db, user_id)
    if user.role == ROLE_ADMIN and role != ROLE_ADMIN:
        if user.id == acting.id:
            raise Conflict("You cannot remove your own admin role; ask another admin.")
        if _other_active_admins(db, user.id) == 0:
            raise Conflict("This is the last active admin; make someone else admin first.")
    if role not in LEAD_CAPABLE_ROLES:
        orphaned = projects_led_only_by(db, user.id)
        if orphaned:
            names = ", ".join(repr(p.name) for p in orphaned[:5])
            raise LastLead(
                f"{user.email} is the last lead of {len(orphaned)} project(s) ({names}); make "
                "another member lead there first.",
                details={"project_ids": [p.id for p in orphaned], "user_id": user.id},
            )
    user.role = role
    db.flush()
    return user


def set_active(db: Session, *, acting: User, user_id: int, active: bool) -> User:
    user = get_user(db, user_id)
    if not active:
        if user.id == acting.id:
            raise Conflict("You cannot deactivate your own account.")
        if user.role == ROLE_ADMIN and _other_active_admins(db, user.id) == 0:
            raise Conflict("This is the last active admin; it cannot be deactivated.")
    user.is_active = active
    db.flush()
    return user


def memberships_of(db: Session, user_id: int) -> list[MembershipRow]:
    rows = db.execute(
        select(Project.id, Project.name, Membership.role)
        .join(Membership, Membership.project_id == Project.id)
        .where(Membership.user_id == user_id)
        .order_by(Project.name)
    ).tuples()
    return [MembershipRow(pid, name, role) for pid, name, role in rows]


def set_membership(db: Session, *, user_id: int, project_id: int, role: str,
                   by: User | None = None) -> Membership:
    """Add the user to a project, or change their role there."""
    if role not in PROJECT_ROLES:
        raise InvalidInput(f"Project role must be one of {', '.join(PROJECT_ROLES)}.",
                           details={"field": "role"})
    user = get_user(db, user_id)
    if db.get(Project, project_id) is None:
        raise NotFound(f"Project {project_id} does not exist.")
    return set_member_role(db, project_id, user, role, by=by)


def remove_membership(db: Session, *, user_id: int, project_id: int,
                      by: User | None = None) -> None:
    membership = db.scalars(
        select(Membership).where(Membership.user_id == user_id,
                                 Membership.project_id == project_id)
    ).first()
    if membership is None:
        raise NotFound("That user is not a member of that project.")
    remove_member(db, project_id, user_id, by=by)


def list_projects(db: Session) -> list[Project]:
    return list(db.scalars(select(Project).order_by(Project.name)))


def list_all_tokens(db: Session) -> list[TokenRow]:
    rows = db.execute(
        select(ApiToken, User.email, Project.name)
        .join(User, User.id == ApiToken.user_id)
        .outerjoin(Project, Project.id == ApiToken.project_id)
        .order_by(ApiToken.revoked_at.is_not(None), ApiToken.id.desc())
    ).tuples()
    return [TokenRow(token, email, project) for token, email, project in rows]


@dataclass(frozen=True)
class TokenRequest:
    """An admin's request for a token on behalf of a user."""

    user_id: int
    name: str
    scopes: tuple[str, ...]
    project_id: int | None = None
    expires_in_days: int | None = None

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise InvalidInput("Give the token a name that says where it is used.",
                               details={"field": "name"})
        unknown = sorted(set(self.scopes) - set(SCOPES))
        if not self.scopes or unknown:
            raise InvalidInput(f"Pick at least one scope out of {', '.join(SCOPES)}.",
                               details={"field": "scopes"})
        if self.expires_in_days is not None and not 1 <= self.expires_in_days <= MAX_TOKEN_DAYS:
            raise InvalidInput(f"Expiry must be between 1 and {MAX_TOKEN_DAYS} days, or none.",
                               details={"field": "expires_in_days"})


def issue_token(db: Session, request: TokenRequest) -> user_service.IssuedToken:
    user = get_user(db, request.user_id)
    expires = (
        datetime.now(UTC) + timedelta(days=request.expires_in_days)
        if request.expires_in_days
        else None
    )
    return user_service.create_token(
        db,
        user=user,
        name=request.name,
        scopes=request.scopes,
        project_id=request.project_id,
        expires_at=expires,
    )
