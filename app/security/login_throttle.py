"""Sign-in throttling: failed passwords per account and per client address, counted in memory.

Checking a password costs tens of milliseconds of argon2 CPU, which is what makes guessing slow
and also what makes a flood of guesses slow everyone else down. So the throttle is consulted
*before* any hashing: once an account (the e-mail as typed, known or not, so nobody learns which
accounts exist) or an address has too many recent failures, sign-in answers 429 with
``Retry-After`` and verifies nothing, the correct password included, until the window has room.
A successful sign-in clears its account's failures (not its address's).

Windows are sliding and kept per web process, like the write rate limit
(:mod:`app.domain.ratelimit`); with several processes each enforces its own limits.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from starlette.requests import Request

from app.config import Settings
from app.domain.ratelimit import SlidingWindowLimiter

_lock = threading.Lock()


@dataclass(frozen=True)
class LoginThrottle:
    accounts: SlidingWindowLimiter
    addresses: SlidingWindowLimiter

    @classmethod
    def from_settings(cls, settings: Settings) -> LoginThrottle:
        window = float(settings.login_window_seconds)
        return cls(
            SlidingWindowLimiter(settings.login_failures_per_account, window=window),
            SlidingWindowLimiter(settings.login_failures_per_address, window=window),
        )

    def matches(self, settings: Settings) -> bool:
        return (self.accounts.limit, self.addresses.limit, self.accounts.window) == (
            settings.login_failures_per_account, settings.login_failures_per_address,
            float(settings.login_window_seconds))

    def retry_after(self, account: str, address: str) -> int:
        """Seconds to wait before this account or address may try again (0: go ahead)."""
        return max(self.accounts.retry_after(account), self.addresses.retry_after(address))

    def failed(self, account: str, address: str) -> None:
        self.accounts.hit(account)
        self.addresses.hit(address)

    def succeeded(self, account: str) -> None:
        self.accounts.forget(account)


def login_throttle(request: Request) -> LoginThrottle:
    """The app's throttle, created on first use (one per app, so tests do not share windows)."""
    settings: Settings = request.app.state.settings
    state = request.app.state
    throttle: LoginThrottle | None = getattr(state, "login_throttle", None)
    if throttle is None or not throttle.matches(settings):
        with _lock:
            throttle = getattr(state, "login_throttle", None)
            if throttle is None or not throttle.matches(settings):
                throttle = LoginThrottle.from_settings(settings)
                state.login_throttle = throttle
    return throttle


def account_key(email: str) -> str:
    return "account:" + email.strip().lower()[:320]


def address_key(request: Request) -> str:
    return "address:" + (request.client.host if request.client else "unknown")
