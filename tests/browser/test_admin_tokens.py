"""An admin creates an API token (its secret shown once), uses it, and revokes it."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import BrowserPage, LiveStack, sign_in

pytestmark = [pytest.mark.browser]


def test_admin_creates_and_revokes_a_token(live: LiveStack, browser_page: BrowserPage) -> None:
    page = browser_page.page
    sign_in(page, live, "admin")
    page.get_by_role("link", name="Admin").click()
    page.get_by_role("link", name="API tokens").click()
    page.get_by_label("Name").fill("nightly export")
    page.get_by_label("Acts as").select_option(label=live.seeded.users["lead"])
    page.get_by_label("annotate").check()
    page.get_by_role("button", name="Create token").click()

    secret = page.locator("#token-secret").inner_text().strip()
    assert secret.startswith("tap_")
    bearer = {"Authorization": f"Bearer {secret}"}
    assert httpx.get(f"{live.url}/api/v1/projects", headers=bearer).status_code == 200

    page.goto(f"{live.url}/admin/tokens")
    assert secret not in page.content()  # shown once, never again
    row = page.locator("#tokens-table tr", has_text="nightly export")
    expect(row).to_contain_text("active")
    row.get_by_role("button", name="Revoke").click()
    expect(page.locator(".flash-success")).to_contain_text("revoked")
    expect(page.locator("#tokens-table tr", has_text="nightly export")).to_contain_text("revoked")
    assert httpx.get(f"{live.url}/api/v1/projects", headers=bearer).status_code == 401
