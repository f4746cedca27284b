"""A lead reads the dashboard's plots, drawn from seeded round metrics, and changes the budget on
the settings page."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from app.db.models import Project
from tests.browser.conftest import BrowserPage, LiveStack, screenshot, sign_in

pytestmark = [pytest.mark.browser]


def test_lead_changes_budget_and_sees_plots_with_data(
    live: LiveStack, browser_page: BrowserPage
) -> None:
    page = browser_page.page
    project_id = live.seeded.tickets_id
    sign_in(page, live, "lead")
    page.goto(f"{live.url}/projects/{project_id}")
    page.get_by_role("link", name="Dashboard").first.click()
    page.wait_for_url(f"{live.url}/projects/{project_id}/dashboard")

    curve = page.locator("#learning-curve svg")
    expect(curve).to_be_visible()
    f1_points = curve.locator("polyline.line-f1").get_attribute("points") or ""
    assert len(f1_points.split()) == live.seeded.rounds
    expect(curve.locator("circle.dot-f1")).to_have_count(live.seeded.rounds)
    assert curve.bounding_box()["height"] > 150  # type: ignore[index]
    expect(page.locator("#confusion td")).to_have_count(25)
    expect(page.locator("#per-class .hbars li")).to_have_count(5)
    expect(page.locator("#stop")).to_contain_text("Consider stopping")
    expect(page.locator("#stop")).to_contain_text("0.15 points per 100 labels")
    expect(page.locator("#agreement")).to_contain_text("Fleiss")
    expect(page.locator("#throughput tbody tr")).to_have_count(3)
    expect(page.locator("#model-card .card-summary")).to_contain_text("LoRA, rank 8")
    screenshot(page, "dashboard")
    screenshot(page, "dashboard-full", full_page=True)

    budget = page.locator("#budget")
    expect(budget.get_by_label("Label budget")).to_be_hidden()  # folded until asked for
    budget.get_by_text("Change budget and stop rule").click()
    budget.get_by_label("Label budget").fill("1200")
    budget.get_by_label("Batch size").fill("50")
    budget.get_by_role("button", name="Save budget").click()
    page.wait_for_url(f"{live.url}/projects/{project_id}/dashboard#budget")
    expect(page.locator(".flash-success")).to_contain_text("Budget and stop rule saved")
    with live.sessions() as db:
        project = db.get(Project, project_id)
        assert project is not None and (project.label_budget, project.batch_size) == (1200, 50)
    expect(page.locator("#kpi-budget")).to_contain_text("/ 1,200")
    assert re.search(r"next batch 50", page.locator("#budget").inner_text())
    budget.get_by_text("Change budget and stop rule").click()
    budget.get_by_label("Label budget").fill("20000000")  # the browser allows it, the server not
    budget.get_by_role("button", name="Save budget").click()
    expect(page.locator("#budget .error")).to_contain_text("between 1 and 10,000,000")
    expect(page.locator("#budget").get_by_label("Label budget")).to_be_visible()  # left open

    page.goto(f"{live.url}/projects/{project_id}/settings")
    page.get_by_label("Label budget").fill("20000000")  # the browser allows it, the server not
    page.get_by_role("button", name="Save budget").click()
    expect(page.locator("#budget .error")).to_contain_text("between 1 and 10,000,000")
    with live.sessions() as db:
        project = db.get(Project, project_id)
        assert project is not None and project.label_budget == 1200
