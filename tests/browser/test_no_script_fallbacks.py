"""The annotator view's no-script fallbacks: visible without JavaScript, hidden with it (also
after htmx has swapped a fragment in, where a ``<noscript>`` would come alive)."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import VIEWPORT, BrowserPage, LiveStack, sign_in

pytestmark = [pytest.mark.browser]


def test_the_recent_labels_change_button_shows_only_without_javascript(
    live: LiveStack, browser_page: BrowserPage, chromium: Any
) -> None:
    page = browser_page.page
    sign_in(page, live, "annotator")
    page.goto(f"{live.url}/projects/{live.seeded.markup_id}/annotate")
    page.keyboard.press("1")  # a label: the recent list is refreshed by htmx
    expect(page.locator("#save-state")).to_have_text("All labels saved")
    recent = page.locator("#recent-labels")
    expect(recent.locator(".recent-select").first).to_be_visible()
    expect(recent.locator(".recent-change-fallback").first).to_be_attached()
    expect(recent.get_by_role("button", name="Change")).to_have_count(0)  # hidden with the script

    context = chromium.new_context(viewport=VIEWPORT, java_script_enabled=False)
    try:
        plain = context.new_page()
        sign_in(plain, live, "annotator")
        plain.goto(f"{live.url}/projects/{live.seeded.markup_id}/annotate")
        change = plain.locator("#recent-labels").get_by_role("button", name="Change")
        expect(change.first).to_be_visible()
    finally:
        context.close()
