"""An admin launches TAPT and watches its progress bar move without reloading, then cancels it."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from app.db.models import RUN_CANCELLED, RUN_SUCCEEDED, RUN_TAPT, TrainingRun
from tests.browser.conftest import BrowserPage, LiveStack, screenshot, sign_in, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.celery, pytest.mark.timeout(420)]


def _step(progress: object) -> int:
    text = progress.locator(".run-meta").inner_text()  # type: ignore[attr-defined]
    return int(text.split("step", 1)[1].split("/")[0].strip())


def test_tapt_progress_updates_live_and_cancel_stops_it(
    live: LiveStack, browser_page: BrowserPage
) -> None:
    page = browser_page.page
    project_id = live.seeded.tickets_id
    sign_in(page, live, "admin")
    page.goto(f"{live.url}/projects/{project_id}/runs")
    page.get_by_label("TAPT steps").fill("2000")
    page.get_by_role("button", name="Run TAPT").click()
    page.wait_for_url(f"{live.url}/projects/{project_id}/runs/*")
    run_id = int(page.url.rsplit("/", 1)[1])
    live.wait_for_worker()

    progress = page.locator("#run-detail .run-progress")
    expect(progress).to_have_attribute("data-status", "running", timeout=180_000)
    wait_until(lambda: _step(progress) >= 150, "the first training steps", timeout=120)
    first = _step(progress)
    wait_until(lambda: _step(progress) > first, "the bar to move without a reload", timeout=60)
    expect(progress.locator(".run-meta")).to_contain_text("loss")
    expect(progress.locator(".run-meta")).to_contain_text("ETA")
    expect(page.locator("#run-detail")).to_contain_text("metrics.loss")  # details refresh too
    screenshot(page, "run-progress")

    progress.get_by_role("button", name="Cancel run").click()
    expect(progress).to_have_attribute("data-status", "cancelled", timeout=60_000)
    with live.sessions() as db:
        run = db.get(TrainingRun, run_id)
        assert run is not None and run.kind == RUN_TAPT and run.project_id == project_id
        assert run.status == RUN_CANCELLED and run.step < run.total
        assert run.status != RUN_SUCCEEDED
