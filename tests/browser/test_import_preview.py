"""A lead previews an import in the browser (first rows, column mapping) and then imports it."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from app.db.models import TASK_MULTI_LABEL, Annotation, Item, Label, Membership, Project
from app.domain.annotation.label_sets import label_sets
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


def _multi_label_project(live: LiveStack) -> int:
    with live.sessions() as db:
        project = Project(name="Tags to import", created_by_id=live.seeded.user_ids["lead"],
                          task_type=TASK_MULTI_LABEL, overlap_rate=0.0)
        db.add(project)
        db.flush()
        db.add_all([Label(project_id=project.id, name=name, position=i)
                    for i, name in enumerate(("billing", "bug", "feature"))])
        db.add(Membership(project_id=project.id, user_id=live.seeded.user_ids["lead"],
                          role="lead"))
        db.commit()
        return project.id


def test_a_multi_label_jsonl_preview_shows_lists_and_imports_sets(
    live: LiveStack, browser_page: BrowserPage
) -> None:
    project_id = _multi_label_project(live)
    page = browser_page.page
    sign_in(page, live, "lead")
    page.goto(f"{live.url}/projects/{project_id}/import")
    expect(page.get_by_label("Label separator")).to_have_value("")
    expect(page.locator("#separator-help")).to_contain_text("means none of them applies")
    rows = [{"text": "refund after a crash", "label": ["bug", "billing"]},
            {"text": "just saying hi", "label": []},
            {"text": "not yet", "label": None}]
    page.locator('input[type="file"]').set_input_files({
        "name": "tags.jsonl", "mimeType": "application/x-ndjson",
        "buffer": "".join(json.dumps(r) + "\n" for r in rows).encode()})
    preview = page.locator("#import-preview")
    expect(preview.locator("thead")).to_contain_text("label → label")
    expect(preview.locator("tbody tr").nth(0)).to_contain_text('["bug","billing"]')
    expect(preview.locator("tbody tr").nth(1)).to_contain_text("[]")
    expect(preview.locator("tbody tr").nth(2)).to_contain_text("null")
    page.get_by_role("button", name="Import").click()
    report = page.locator("#import-report")
    expect(report.locator('[data-count="annotations"]')).to_have_text("2")
    expect(report.locator('[data-count="none_of_these"]')).to_have_text("1")
    with live.sessions() as db:
        stored = db.execute(
            select(Item.text, Annotation.id).join(Annotation, Annotation.item_id == Item.id)
            .where(Item.project_id == project_id)).tuples().all()
        names = dict(db.execute(select(Label.id, Label.name)
                                .where(Label.project_id == project_id)).tuples().all())
        sets = label_sets(db, [a for _t, a in stored])
        assert {t: [names[i] for i in sets[a]] for t, a in stored} == {
            "refund after a crash": ["billing", "bug"], "just saying hi": []}
    assert browser_page.dialogs == []
