"""Password hashing with argon2id (OWASP's first choice) and generation of one-time passwords."""

from __future__ import annotations

import secrets
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_PASSWORD_LENGTH = 10
GENERATED_PASSWORD_BYTES = 12  # 16 URL-safe characters, ~96 bits


@lru_cache(maxsize=1)
def _hasher() -> PasswordHasher:
    return PasswordHasher()


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"Passwords need at least {MIN_PASSWORD_LENGTH} characters.")
    return _hasher().hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when ``password`` matches; never raises for a malformed or foreign hash."""
    try:
        return _hasher().verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher().check_needs_rehash(password_hash)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _hasher().hash(secrets.token_urlsafe(16))


def burn_verification_time(password: str) -> None:
    """Spend the time of one verification so unknown e-mails are not told apart by timing."""
    verify_password(_dummy_hash(), password)


def generate_password() -> str:
    """A fresh random password, shown once to whoever created the account."""
    return secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)
