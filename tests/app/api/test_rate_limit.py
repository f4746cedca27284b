"""Per-token write rate limit: a sliding minute, 429 with Retry-After, reads never limited."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy.orm import Session

from app.domain.ratelimit import SlidingWindowLimiter
from tests.app.api.support import caller, lead_with_project


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sliding_window_counts_the_last_minute_exactly() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(3, clock=clock)
    assert [limiter.hit("t").allowed for _ in range(3)] == [True, True, True]
    refused = limiter.hit("t")
    assert not refused.allowed and refused.retry_after_seconds == 60
    assert limiter.hit("other").allowed  # keys are independent
    clock.now += 30
    assert not limiter.hit("t").allowed
    clock.now += 30.001  # the first three left the window
    assert limiter.hit("t").allowed
    assert limiter.hit("t").remaining == 1


def test_writes_beyond_the_limit_get_429_with_retry_after(app: FastAPI, db: Session) -> None:
    app.state.settings.write_rate_limit_per_minute = 3
    lead, project = lead_with_project(app, db)
    other = caller(app, db, user=lead.user)
    url = f"/api/v1/projects/{project.id}/queue/lease"
    codes = [lead.post(url, json={"n": 1}).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    refused = lead.post(url, json={"n": 1})
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "Rate limit exceeded" in refused.json()["error"]["message"]
    assert lead.get(f"/api/v1/projects/{project.id}/queue/status").status_code == 200
    assert other.post(url, json={"n": 1}).status_code == 200  # per token, not per user


def test_limiter_rejects_nonsense_limits() -> None:
    import pytest

    with pytest.raises(ValueError, match="at least 1"):
        SlidingWindowLimiter(0)
