"""The interactive API docs render in a real browser, offline and within the CSP."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import BrowserPage, LiveStack

pytestmark = [pytest.mark.browser]


def test_swagger_ui_renders_the_api_without_a_cdn_or_a_csp_violation(
    live: LiveStack, browser_page: BrowserPage
) -> None:
    page = browser_page.page
    outside: list[str] = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(live.url) else None)
    page.goto(f"{live.url}/api/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Tapestry")
    operation = page.locator(".opblock", has_text="/api/v1/projects").first
    expect(operation).to_be_visible()
    assert page.locator(".opblock").count() > 20
    assert outside == [], f"the page reached outside the app: {outside}"
    assert not [c for c in browser_page.console if "error" in c.lower()], browser_page.console
