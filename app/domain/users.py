"""Accounts: users, password sign-in and API tokens.

There are no default credentials anywhere: the first admin comes from ``tapestry user create`` and
the demo prints freshly generated passwords once.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from app.db.models import ROLES, SCOPES, ApiToken, Project, User
from app.errors import AuthenticationRequired, Conflict, InvalidInput, NotFound
from app.security.passwords import (
    burn_verification_time,
    hash_password,
    needs_rehash,
    verify_password,
)
from app.security.tokens import generate_token, hash_token, looks_like_token

_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")
TOKEN_TOUCH_INTERVAL = timedelta(minutes=1)


def normalise_email(email: str) -> str:
    value = email.strip().lower()
    if not _EMAIL_RE.match(value) or len(value) > 320:
        raise InvalidInput(f"{email!r} is not an e-mail address.", details={"field": "email"})
    return value


def get_user_by_email(db: Session, email: str) -> User | None:
    return db.scalar(select(User).where(User.email == normalise_email(email)))


def create_user(db: Session, *, email: str, password: str, role: str, name: str = "") -> User:
    if role not in ROLES:
        raise InvalidInput(f"Unknown role {role!r}; use one of {', '.join(ROLES)}.")
    address = normalise_email(email)
    if db.scalar(select(User.id).where(User.email == address)) is not None:
        raise Conflict(f"A user with e-mail {address} already exists.")
    try:
        password_hash = hash_password(password)
    except ValueError as exc:
        raise InvalidInput(str(exc), details={"field": "password"}) from exc
    user = User(email=address, name=name.strip(), password_hash=password_hash, role=role)
    db.add(user)
    db.flush()
    return user


def set_password(db: Session, user: User, password: str) -> None:
    """Change a password; every existing session of the user ends (fingerprint changes)."""
    try:
        user.password_hash = hash_password(password)
    except ValueError as exc:
        raise InvalidInput(str(exc), details={"field": "password"}) from exc
    db.flush()


def end_all_sessions(db: Session, user: User) -> None:
    """Revoke every session cookie of ``user`` on the server (sign-out): cookies carry the
    generation they were issued under, and older generations are refused from now on."""
    user.session_generation = (user.session_generation or 0) + 1
    db.flush()


def authenticate_password(db: Session, email: str, password: str) -> User:
    """The active user with these credentials; one message for every failure (no user probing)."""
    failure = AuthenticationRequired("Wrong e-mail or password.")
    try:
        user = get_user_by_email(db, email)
    except InvalidInput:
        user = None
    if user is None or not user.is_active:
        burn_verification_time(password)
        raise failure
    if not verify_password(user.password_hash, password):
        raise failure
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
        db.flush()
    return user


@dataclass(frozen=True)
class IssuedToken:
    """A new token; ``plaintext`` is shown once and never stored."""

    token: ApiToken
    plaintext: str


def create_token(
    db: Session,
    *,
    user: User,
    name: str,
    scopes: Sequence[str],
    project_id: int | None = None,
    expires_at: datetime | None = None,
) -> IssuedToken:
    unknown = sorted(set(scopes) - set(SCOPES))
    if not scopes or unknown:
        raise InvalidInput(
            f"Token scopes must be a non-empty subset of {', '.join(SCOPES)}; got {list(scopes)}."
        )
    if project_id is not None and db.get(Project, project_id) is None:
        raise NotFound(f"Project {project_id} does not exist.")
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise InvalidInput("The expiry must lie in the future.")
    issued = generate_token()
    token = ApiToken(
        name=name.strip() or "token",
        token_hash=issued.token_hash,
        prefix=issued.prefix,
        user_id=user.id,
        project_id=project_id,
        scopes=sorted(set(scopes)),
        expires_at=expires_at,
    )
    db.add(token)
    db.flush()
    return IssuedToken(token=token, plaintext=issued.plaintext)


def revoke_token(db: Session, token_id: int, *, now: datetime | None = None) -> ApiToken:
    token = db.get(ApiToken, token_id)
    if token is None:
        raise NotFound(f"Token {token_id} does not exist.")
    if token.revoked_at is None:
        token.revoked_at = now or datetime.now(UTC)
        db.flush()
    return token


def list_tokens(db: Session, user_id: int) -> list[ApiToken]:
    query = select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id)
    return list(db.scalars(query))


def authenticate_token(db: Session, plaintext: str, *, now: datetime) -> tuple[ApiToken, User]:
    """The token and its user for a presented Bearer value; 401 for anything not currently valid."""
    invalid = AuthenticationRequired("Invalid, expired or revoked API token.")
    if not looks_like_token(plaintext):
        raise invalid
    token = db.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(plaintext)))
    if token is None or token.revoked_at is not None:
        raise invalid
    if token.expires_at is not None and token.expires_at <= now:
        raise invalid
    user = db.get(User, token.user_id)
    if user is None or not user.is_active:
        raise invalid
    if token.last_used_at is None or now - token.last_used_at > TOKEN_TOUCH_INTERVAL:
        note_token_use(token.id, now)  # no write on the request's path: see flush_token_touches
    return token, user


# Uses of tokens whose stored ``last_used_at`` is over TOKEN_TOUCH_INTERVAL old, not yet written.
# Writing them from the auth dependency made every token-authenticated *read* a SQLite writer;
# the web process's maintenance loop (app.maintenance) writes them in one short transaction,
# under the same process write lock as every other write.
_pending_touches: dict[int, datetime] = {}
_pending_guard = threading.Lock()


def note_token_use(token_id: int, now: datetime) -> None:
    """Remember that ``token_id`` was used at ``now``; written by :func:`flush_token_touches`."""
    with _pending_guard:
        previous = _pending_touches.get(token_id)
        if previous is None or previous < now:
            _pending_touches[token_id] = now


def flush_token_touches(db: Session) -> int:
    """Write the remembered token uses (never moving ``last_used_at`` back); the caller commits.

    Returns how many tokens were touched. A rollback loses at most one period of ``last_used_at``
    updates, which the next use of each token notes again.
    """
    with _pending_guard:
        pending = sorted(_pending_touches.items())
        _pending_touches.clear()
    for token_id, when in pending:
        db.execute(
            update(ApiToken)
            .where(
                ApiToken.id == token_id,
                or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at < when),
            )
            .values(last_used_at=when)
            .execution_options(synchronize_session=False)
        )
    if pending:
        db.flush()
    return len(pending)
