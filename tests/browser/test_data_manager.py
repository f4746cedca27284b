"""The data manager in Chromium: a lead searches with the keyboard, relabels a whole filter, and
exports it; the downloaded file re-imports through the normal import page to the same labels."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import ROLE_LEAD, Annotation, Item, Label, Membership, Project, User
from app.domain.imports import content_hash
from app.domain.projects import ProjectSettings, create_project
from tests.browser.conftest import BrowserPage, LiveStack, screenshot, sign_in

pytestmark = [pytest.mark.browser]
LABELS = ("finance", "sports", "weather")
TEXTS = {
    "The market closed higher as bank shares rallied": "sports",  # mislabelled on purpose
    "Bond market yields fell after the central bank spoke": "finance",
    "The home team won the cup final on penalties": "sports",
    "Heavy rain and wind expected along the coast tonight": "weather",
    "A quiet day: nothing notable in the village": None,
}


def _project(live: LiveStack) -> int:
    """A fresh project of the seeded lead (the shared seed stays untouched)."""
    with live.sessions() as db:
        lead = db.get(User, live.seeded.user_ids["lead"])
        assert lead is not None and lead.role == ROLE_LEAD
        project = create_project(db, creator=lead, settings=ProjectSettings(
            name=f"Data manager {secrets.token_hex(3)}", labels=LABELS))
        labels = {label.name: label.id for label in _labels(db, project)}
        for text, label in TEXTS.items():
            item = Item(project_id=project.id, text=text, content_hash=content_hash(text))
            db.add(item)
            db.flush()
            if label:
                db.add(Annotation(project_id=project.id, item_id=item.id, annotator_id=lead.id,
                                  label_id=labels[label]))
        db.commit()
        return project.id


def _labels(db: Session, project: Project) -> list[Label]:
    return list(db.scalars(select(Label).where(Label.project_id == project.id)))


def _live_labels(live: LiveStack, project_id: int) -> dict[str, str]:
    with live.sessions() as db:
        rows = db.execute(
            select(Item.text, Label.name)
            .join(Annotation, Annotation.item_id == Item.id)
            .join(Label, Label.id == Annotation.label_id)
            .where(Item.project_id == project_id, Annotation.deleted.is_(False),
                   Annotation.superseded_by_id.is_(None))
        )
        return {text: name for text, name in rows}


def test_lead_relabels_a_search_filter_with_the_keyboard(
    live: LiveStack, browser_page: BrowserPage
) -> None:
    page = browser_page.page
    project_id = _project(live)
    sign_in(page, live, "lead")
    page.goto(f"{live.url}/projects/{project_id}/data")
    expect(page.locator("#match-count")).to_have_text("5")
    page.locator("body").press("/")
    expect(page.locator("#data-q")).to_be_focused()
    page.keyboard.type("market")
    expect(page.locator("#match-count")).to_have_text("2")  # htmx swapped the results
    assert "q=market" in page.url
    expect(page.locator("tr.data-row")).to_have_count(2)
    page.locator("h1").click()  # leave the search box (Escape would clear a search field)
    page.keyboard.press("j")
    expect(page.locator("tr.data-row.current")).to_have_count(1)
    page.keyboard.press("x")
    expect(page.locator('tr.data-row.current input[name="item_ids"]')).to_be_checked()
    page.keyboard.press("x")
    expect(page.locator('tr.data-row.current input[name="item_ids"]')).not_to_be_checked()
    page.locator("#all-matching").check()
    page.locator("#bulk-action").select_option("relabel")
    page.get_by_label("New label").select_option("finance")
    screenshot(page, "data-manager")
    page.locator("#bulk-apply").click()
    expect(page.locator(".flash-success")).to_contain_text("Relabelled 2 item(s)")
    assert "q=market" in page.url  # back on the same filter
    labels = _live_labels(live, project_id)
    market = [t for t in TEXTS if "market" in t]
    assert all(labels[t] == "finance" for t in market)
    assert labels["The home team won the cup final on penalties"] == "sports"  # not in the filter
    with live.sessions() as db:
        kept = db.scalar(select(Annotation.id).join(Item, Item.id == Annotation.item_id).where(
            Item.project_id == project_id, Annotation.superseded_by_id.is_not(None)))
        assert kept is not None  # the annotator's original label is kept, superseded
    page.locator("tr.data-row a").first.click()
    expect(page.locator("#item-label")).to_have_text("finance")
    expect(page.locator("#item-annotations")).to_contain_text("superseded")
    expect(page.locator("#item-events")).to_contain_text("relabel")


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_of_a_filter_reimports_to_the_same_labels(
    live: LiveStack, browser_page: BrowserPage, tmp_path: Path, fmt: str
) -> None:
    page = browser_page.page
    source = _project(live)
    sign_in(page, live, "lead")
    page.goto(f"{live.url}/projects/{source}/data?labelled=yes")
    expect(page.locator("#match-count")).to_have_text("4")
    name = {"csv": "CSV", "jsonl": "JSONL"}[fmt]
    with page.expect_download() as download_info:
        page.locator(".data-export").get_by_role("link", name=name, exact=True).click()
    exported = tmp_path / f"export.{fmt}"
    download_info.value.save_as(exported)

    with live.sessions() as db:
        lead = db.get(User, live.seeded.user_ids["lead"])
        assert lead is not None
        target = create_project(db, creator=lead, settings=ProjectSettings(
            name=f"Reimport {secrets.token_hex(3)}", labels=LABELS)).id
        assert db.scalar(select(Membership.id).where(Membership.project_id == target))
        db.commit()
    page.goto(f"{live.url}/projects/{target}/import")
    page.locator('input[type="file"]').set_input_files(str(exported))
    page.get_by_label("Text column").fill("text")
    page.get_by_label("Label column (optional)").fill("label")
    page.get_by_label("Split column (optional)").fill("split")
    page.get_by_role("button", name="Import").click()
    expect(page.locator("#import-report")).to_contain_text("4")
    expected = {t: label for t, label in TEXTS.items() if label}
    assert _live_labels(live, target) == expected
