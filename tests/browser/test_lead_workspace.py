"""A project lead who is not an admin runs the project from its own pages, with a real worker:
TAPT for a few steps (with its time estimate), a retrain, promote, roll back, download."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from app.db.models import RUN_RETRAIN, RUN_SUCCEEDED, RUN_TAPT, ModelVersion, Project, TrainingRun
from tests.browser.conftest import BrowserPage, LiveStack, screenshot, sign_in, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.celery, pytest.mark.timeout(600)]
RUN_TIMEOUT = 300.0  # s: worker start (imports torch) + TAPT or training + queue rebuild


def _versions(live: LiveStack, project_id: int) -> list[ModelVersion]:
    with live.sessions() as db:
        return list(db.scalars(select(ModelVersion).where(ModelVersion.project_id == project_id)
                               .order_by(ModelVersion.version)))


def _current(live: LiveStack, project_id: int) -> int | None:
    with live.sessions() as db:
        project = db.get(Project, project_id)
        assert project is not None
        return project.current_model_version_id


def _finished(live: LiveStack, run_id: int) -> TrainingRun | None:
    with live.sessions() as db:
        run = db.get(TrainingRun, run_id)
        assert run is not None
        if run.status in ("failed", "cancelled"):
            raise AssertionError(f"run {run_id} {run.status}: {run.message}\n{run.error}")
        return run if run.status == RUN_SUCCEEDED else None


def _no_active_runs(live: LiveStack, project_id: int) -> bool:
    with live.sessions() as db:
        return not db.scalars(select(TrainingRun).where(
            TrainingRun.project_id == project_id,
            TrainingRun.status.in_(("queued", "running")))).first()


def test_lead_runs_tapt_retrains_promotes_rolls_back_and_downloads(
    live: LiveStack, browser_page: BrowserPage, tmp_path: Path
) -> None:
    page = browser_page.page
    project_id = live.seeded.tickets_id
    sign_in(page, live, "lead")
    page.goto(f"{live.url}/projects/{project_id}/dashboard")
    expect(page.get_by_role("link", name="Admin")).to_have_count(0)  # not an admin
    page.locator(".project-nav").get_by_role("link", name="Runs").click()
    page.wait_for_url(f"{live.url}/projects/{project_id}/runs")

    # TAPT for a few steps; the estimate follows the steps box
    steps = page.get_by_label("TAPT steps")
    steps.fill("6")
    expect(page.locator("#tapt-estimate")).to_contain_text("6 steps")
    page.get_by_role("button", name="Run TAPT").click()
    page.wait_for_url(f"{live.url}/projects/{project_id}/runs/*")
    tapt_id = int(page.url.rsplit("/", 1)[1])
    live.wait_for_worker()
    progress = page.locator("#run-detail .run-progress")
    expect(progress).to_have_attribute("data-status", "succeeded",
                                       timeout=RUN_TIMEOUT * 1000)
    tapt = wait_until(lambda: _finished(live, tapt_id), "TAPT to succeed", timeout=30)
    assert tapt.kind == RUN_TAPT and tapt.step == 6
    # TAPT's own follow-up retrain (forced: the base changed) produces a new version
    wait_until(lambda: _no_active_runs(live, project_id), "TAPT's follow-up retrain",
               timeout=RUN_TIMEOUT)
    after_tapt = _versions(live, project_id)
    assert len(after_tapt) >= 2 and _current(live, project_id) == after_tapt[-1].id

    page.goto(f"{live.url}/projects/{project_id}/runs")
    expect(page.locator("#tapt-estimate")).to_contain_text("on this machine")
    steps.fill("2000")
    expect(page.locator("#tapt-estimate")).to_contain_text("2,000 steps ≈")

    # an explicit retrain, forced although the data did not change
    page.get_by_label("Retrain even if the current model covers the newest labels").check()
    page.get_by_role("button", name="Retrain adapter").click()
    page.wait_for_url(f"{live.url}/projects/{project_id}/runs/*")
    retrain_id = int(page.url.rsplit("/", 1)[1])
    expect(page.locator("#run-detail .run-progress")).to_have_attribute(
        "data-status", "succeeded", timeout=RUN_TIMEOUT * 1000)
    retrain = wait_until(lambda: _finished(live, retrain_id), "the retrain", timeout=30)
    assert retrain.kind == RUN_RETRAIN and retrain.model_version_id is not None
    wait_until(lambda: _no_active_runs(live, project_id), "the queue rebuild",
               timeout=RUN_TIMEOUT)
    versions = _versions(live, project_id)
    newest, previous = versions[-1], versions[-2]
    assert newest.id == retrain.model_version_id == _current(live, project_id)

    # models: roll back, promote again, download
    page.locator(".project-nav").get_by_role("link", name="Models").click()
    page.wait_for_url(f"{live.url}/projects/{project_id}/models")
    row = page.locator("tr", has_text=f"v{newest.version}").first
    expect(row).to_contain_text("current")
    screenshot(page, "lead-workspace")
    page.get_by_role("button", name="Roll back to the previous version").click()
    flash = page.locator(".flash-success")
    expect(flash).to_contain_text(f"Rolled back to model v{previous.version}")
    assert _current(live, project_id) == previous.id
    row = page.locator("tr", has_text=f"v{newest.version}").first
    row.get_by_role("button", name="Promote").click()
    expect(flash).to_contain_text(f"Model v{newest.version} is now current")
    assert _current(live, project_id) == newest.id

    row = page.locator("tr", has_text=f"v{newest.version}").first
    with page.expect_download() as info:
        row.get_by_role("link", name="Download .zip").click()
    target = tmp_path / "adapter.zip"
    info.value.save_as(target)
    names = zipfile.ZipFile(target).namelist()
    assert "tapestry.json" in names and "README.md" in names
    assert any(name.endswith(".safetensors") for name in names)
    wait_until(lambda: _no_active_runs(live, project_id), "the last queue rebuild",
               timeout=RUN_TIMEOUT)
    page.goto(f"{live.url}/projects/{project_id}/runs")
    screenshot(page, "lead-runs")
    page.locator(".project-nav").get_by_role("link", name="Settings").click()
    page.wait_for_url(f"{live.url}/projects/{project_id}/settings")
    for heading in ("General", "Budget and stop rule", "Model and strategy",
                    "Label colours and keys", "Members"):
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
    screenshot(page, "lead-settings", full_page=True)
