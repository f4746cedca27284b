"""API token format ``tap_<prefix>_<secret>``; only the sha256 of the whole token is stored.

The prefix (8 hex characters) is shown in listings so people can tell tokens apart; the secret part
never leaves the process that created it except in the one response that hands it out.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

TOKEN_SCHEME = "tap"
_TOKEN_RE = re.compile(r"^tap_([0-9a-f]{8})_([A-Za-z0-9_-]{32,128})$")


@dataclass(frozen=True)
class NewToken:
    plaintext: str
    prefix: str
    token_hash: str


def hash_token(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def generate_token() -> NewToken:
    prefix = secrets.token_hex(4)
    plaintext = f"{TOKEN_SCHEME}_{prefix}_{secrets.token_urlsafe(32)}"
    return NewToken(plaintext=plaintext, prefix=prefix, token_hash=hash_token(plaintext))


def looks_like_token(value: str) -> bool:
    return _TOKEN_RE.match(value) is not None


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer ...`` header, or None when absent."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None
