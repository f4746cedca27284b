"""A lead previews an import in the browser (first rows, column mapping) and then imports it."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import BrowserPage, LiveStack, sign_in

pytestmark = [pytest.mark.browser]
CSV = (
    b'ref,body,category\n'
    b'1,"A quoted, comma-holding text",safe\n'
    b'2,"<img src=x onerror=alert(1)> pasted markup",unsafe\n'
    b'3,plain third row,safe\n'
)


def test_preview_shows_rows_and_mapping_then_imports(
    live: LiveStack, browser_page: BrowserPage
) -> None:
    page = browser_page.page
    sign_in(page, live, "lead")
    page.goto(f"{live.url}/projects/{live.seeded.markup_id}/import")
    page.locator('input[type="file"]').set_input_files(
        {"name": "tickets.csv", "mimeType": "text/csv", "buffer": CSV})
    preview = page.locator("#import-preview")
    expect(preview.locator("th.mapped")).to_have_count(3)
    expect(preview.locator("thead")).to_contain_text("body → text")
    expect(preview.locator("thead")).to_contain_text("category → label")
    expect(preview.locator("thead")).to_contain_text("ref → id")
    expect(preview.locator("tbody tr")).to_have_count(3)
    expect(preview.locator("tbody")).to_contain_text("A quoted, comma-holding text")
    expect(preview.locator("tbody")).to_contain_text("<img src=x onerror=alert(1)>")
    assert page.locator("#import-preview img").count() == 0
    page.get_by_label("Text column").fill("content")
    expect(preview).to_contain_text("No column named “content”")
    page.get_by_label("Text column").fill("body")
    page.get_by_role("button", name="Import").click()
    report = page.locator("#import-report")
    expect(report.locator('[data-count="created"]')).to_have_text("3")
    expect(report.locator('[data-count="annotations"]')).to_have_text("3")
    assert browser_page.dialogs == []


def test_a_typed_column_name_is_never_replaced_only_flagged_with_a_proposal(
    live: LiveStack, browser_page: BrowserPage
) -> None:
    page = browser_page.page
    sign_in(page, live, "lead")
    page.goto(f"{live.url}/projects/{live.seeded.markup_id}/import")
    page.get_by_label("Text column").fill("body")  # typed: an explicit name
    page.locator('input[type="file"]').set_input_files({
        "name": "messages.csv", "mimeType": "text/csv",
        "buffer": b"msg_id,message,category\n71,first message,safe\n72,second message,unsafe\n",
    })
    preview = page.locator("#import-preview")
    expect(preview).to_contain_text("No column named “body”")
    expect(page.get_by_label("Text column")).to_have_value("body")
    expect(page.get_by_label("Id column (optional)")).to_have_value("msg_id")  # *_id detected
    expect(preview.locator("thead")).to_contain_text("msg_id → id")
    page.get_by_role("button", name="Use “message”").click()
    expect(page.get_by_label("Text column")).to_have_value("message")
    expect(preview).not_to_contain_text("No column named")
    page.get_by_role("button", name="Import").click()
    expect(page.locator('#import-report [data-count="created"]')).to_have_text("2")
