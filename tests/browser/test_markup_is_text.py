"""Stored markup in item texts shows as text and never runs: no dialog, no element."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import BrowserPage, LiveStack, sign_in
from tests.browser.seed import XSS_TEXT

pytestmark = [pytest.mark.browser]


def _assert_inert(page: object) -> None:
    inline = page.evaluate(  # type: ignore[attr-defined]
        "() => Array.from(document.scripts).filter(s => s.textContent.includes('alert(1)')).length"
    )
    assert inline == 0
    assert page.locator("img[src='x']").count() == 0  # type: ignore[attr-defined]
    assert page.locator("img").count() == 0  # type: ignore[attr-defined]


def test_hostile_item_text_is_shown_as_text_in_the_annotator_view(
    live: LiveStack, browser_page: BrowserPage
) -> None:
    page = browser_page.page
    sign_in(page, live, "annotator")
    page.goto(f"{live.url}/projects/{live.seeded.markup_id}/annotate")
    text = page.locator("#item-slot .item-text")
    expect(text).to_have_text(XSS_TEXT)
    neighbour = page.locator("#item-slot .neighbour-text")
    expect(neighbour).to_contain_text("<img src=x onerror=alert(1)>")
    expect(page.locator("#item-slot .why-reason")).to_contain_text("<b>in pool</b>")
    assert page.locator(".why-reason b").count() == 0
    _assert_inert(page)
    page.keyboard.press("1")  # the text now also appears in the recent-labels list
    expect(page.locator("#recent-labels .recent-text").first).to_contain_text("<script>")
    expect(page.locator("#save-state")).to_have_text("All labels saved")
    _assert_inert(page)
    assert browser_page.dialogs == []


def test_hostile_text_in_the_dashboard_disagreements_stays_text(
    live: LiveStack, browser_page: BrowserPage
) -> None:
    page = browser_page.page
    sign_in(page, live, "lead")
    page.goto(f"{live.url}/projects/{live.seeded.tickets_id}/dashboard")
    disputed = page.locator("#agreement .disagreements li", has_text="Order #7")
    expect(disputed).to_contain_text("<script>alert(1)</script>")
    _assert_inert(page)
    assert browser_page.dialogs == []
