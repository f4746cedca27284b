"""A lead marks an item as gold on the gold page, tunes the gold settings, sees the accuracy card
on the dashboard and removes the item again; an annotator of the project cannot open the page."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from app.db.models import SPLIT_POOL, GoldItem, Item, Project
from tests.browser.conftest import BrowserPage, LiveStack, screenshot, sign_in

pytestmark = [pytest.mark.browser]


def test_lead_creates_gold_and_an_annotator_cannot_see_it(
    live: LiveStack, browser_page: BrowserPage
) -> None:
    page = browser_page.page
    project_id = live.seeded.tickets_id
    with live.sessions() as db:
        item_id = db.scalars(select(Item.id).where(Item.project_id == project_id,
                                                   Item.split == SPLIT_POOL)
                             .order_by(Item.id.desc()).limit(1)).one()
    sign_in(page, live, "lead")
    page.goto(f"{live.url}/projects/{project_id}/dashboard")
    page.locator(".project-nav").get_by_role("link", name="Gold").click()
    page.wait_for_url(f"{live.url}/projects/{project_id}/gold")
    expect(page.locator("#gold-list")).to_contain_text("No gold items yet")

    form = page.locator("#gold-add form")
    form.get_by_label("Item id").fill(str(item_id))
    form.get_by_label("Answer").select_option("bug")
    form.get_by_role("button", name="Mark as gold").click()
    page.wait_for_url(f"{live.url}/projects/{project_id}/gold")
    row = page.locator(f'#gold-list tr[data-item-id="{item_id}"]')
    expect(row).to_contain_text("bug")
    expect(row).to_contain_text("0 / 0")
    with live.sessions() as db:
        assert db.scalars(select(GoldItem.item_id)
                          .where(GoldItem.project_id == project_id)).all() == [item_id]

    settings = page.locator("#gold-settings form")
    settings.get_by_label("Share of hand-outs that are gold (%)").fill("10")
    settings.get_by_role("button", name="Save gold settings").click()
    expect(page.get_by_text("Gold settings saved.")).to_be_visible()
    with live.sessions() as db:
        project = db.get(Project, project_id)
        assert project is not None and project.gold_rate == pytest.approx(0.1)
    screenshot(page, "gold-page")

    page.goto(f"{live.url}/projects/{project_id}/dashboard")
    expect(page.locator("#gold")).to_contain_text("1 gold item")
    expect(page.locator("#gold")).to_contain_text("10 % of hand-outs")

    # The annotator of this project: no Gold tab, and the page itself is refused.
    other = page
    other.context.clear_cookies()
    sign_in(other, live, "annotator")
    other.goto(f"{live.url}/projects/{project_id}/annotate")
    expect(other.locator(".project-nav").get_by_role("link", name="Gold")).to_have_count(0)
    reply = other.goto(f"{live.url}/projects/{project_id}/gold")
    assert reply is not None and reply.status == 403
    expect(other.locator("body")).not_to_contain_text("(ticket")

    # Back as the lead: remove the item from gold (leaves the shared seed as it was).
    other.context.clear_cookies()
    sign_in(other, live, "lead")
    other.goto(f"{live.url}/projects/{project_id}/gold")
    other.locator(f'#gold-list tr[data-item-id="{item_id}"]').get_by_role(
        "button", name="Remove").click()
    expect(other.locator("#gold-list")).to_contain_text("No gold items yet")
    with live.sessions() as db:
        project = db.get(Project, project_id)
        assert project is not None
        project.gold_rate = 0.05
        db.commit()
