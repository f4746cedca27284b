"""While the live head reads a large import, the lead's dashboard and the annotator's status
banner show how far it is, update themselves by polling, and go away when it is done."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from app.db.base import utcnow
from app.db.models import LiveHeadState
from tests.browser.conftest import BrowserPage, LiveStack, screenshot, sign_in

pytestmark = [pytest.mark.browser]


def _set_progress(live: LiveStack, project_id: int, done: int, total: int) -> None:
    now = utcnow()
    value = {"done": done, "total": total, "started_at": (now - timedelta(seconds=60)).isoformat(),
             "updated_at": now.isoformat()} if total else {}
    with live.sessions() as db:
        state = db.scalars(select(LiveHeadState).where(LiveHeadState.project_id == project_id)
                           ).first()
        if state is None:
            state = LiveHeadState(project_id=project_id)
            db.add(state)
        state.progress = value
        db.commit()


def test_reading_progress_polls_on_the_dashboard_and_the_annotator_banner(
    live: LiveStack, browser_page: BrowserPage
) -> None:
    page = browser_page.page
    project_id = live.seeded.feedback_id
    try:
        _set_progress(live, project_id, 2_000, 8_000)
        sign_in(page, live, "lead")
        page.goto(f"{live.url}/projects/{project_id}/dashboard")
        bar = page.get_by_test_id("live-reading")
        expect(bar).to_contain_text("Reading 2,000 of 8,000 texts for the live head (25 %)")
        expect(bar).to_contain_text("about 3 min left")  # 60 s for a quarter
        screenshot(page, "dashboard-live-reading")
        _set_progress(live, project_id, 6_000, 8_000)
        expect(bar).to_contain_text("(75 %)", timeout=15_000)  # the fragment polls every 5 s
        _set_progress(live, project_id, 0, 0)
        expect(page.get_by_test_id("live-reading")).to_have_count(0, timeout=15_000)

        page.context.clear_cookies()
        _set_progress(live, project_id, 1_000, 4_000)
        sign_in(page, live, "annotator")
        page.goto(f"{live.url}/projects/{project_id}/annotate")
        banner = page.locator("#queue-status").get_by_test_id("live-reading")
        expect(banner).to_contain_text("Reading 1,000 of 4,000 texts", timeout=15_000)
        expect(banner).to_contain_text("every label is kept")
        _set_progress(live, project_id, 0, 0)
        expect(page.locator("#queue-status").get_by_test_id("live-reading")).to_have_count(
            0, timeout=15_000)
    finally:
        _set_progress(live, project_id, 0, 0)
