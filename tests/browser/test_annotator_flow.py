"""An annotator labels with the keyboard in real Chromium; a real worker retrains; a fresh queue
arrives while they keep labelling."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from app.db.models import (
    RUN_RETRAIN,
    RUN_SUCCEEDED,
    Annotation,
    Project,
    TrainingRun,
)
from tests.browser.conftest import BrowserPage, LiveStack, screenshot, sign_in, wait_until
from tests.browser.seed import SENTENCES

pytestmark = [pytest.mark.browser, pytest.mark.celery, pytest.mark.timeout(420)]
RETRAIN_TIMEOUT = 240_000  # ms: worker start (imports torch) + training + queue rebuild


def _current(page: object) -> str:
    return page.locator("#item-slot .item-card").get_attribute("data-item-id") or ""  # type: ignore[attr-defined]


KEYS = {"sports": "1", "finance": "2", "science": "3"}


def _right_key(page: object) -> str:
    """The key of the item's true topic (the seed corpus is built from known sentences)."""
    text = page.locator("#item-slot .item-text").inner_text()  # type: ignore[attr-defined]
    return next(KEYS[t] for t, sentences in SENTENCES.items()
                if any(text.startswith(s) for s in sentences))


def _press(page: object, key: str) -> tuple[str, str]:
    """Press ``key`` on the current item and wait until another item is shown."""
    before = _current(page)
    page.keyboard.press(key)  # type: ignore[attr-defined]
    page.wait_for_function(  # type: ignore[attr-defined]
        "before => { const c = document.querySelector('#item-slot .item-card');"
        " return c && c.dataset.itemId && c.dataset.itemId !== before; }",
        arg=before,
    )
    return before, _current(page)


def test_keyboard_labelling_undo_skip_submit_retrain_and_fresh_queue(
    live: LiveStack, browser_page: BrowserPage
) -> None:
    page = browser_page.page
    project_id = live.seeded.topics_id
    sign_in(page, live, "annotator")
    page.goto(f"{live.url}/projects/{project_id}/annotate")
    expect(page.locator("#item-slot .item-card .item-text")).to_be_visible()
    expect(page.locator(".batch-count")).to_have_text("0 / 10")
    expect(page.locator('#item-slot .label-btn[data-key="1"]')).to_contain_text("sports")

    labelled: list[str] = []
    for _ in range(4):
        item, _ = _press(page, _right_key(page))
        labelled.append(item)
    right = _right_key(page)
    wrong = next(k for k in "123" if k != right)
    item, _ = _press(page, wrong)
    labelled.append(item)
    # z: the last label is taken back and its item comes back with a hint
    page.keyboard.press("z")
    expect(page.locator("#item-slot .item-card")).to_have_attribute("data-item-id",
                                                                     labelled[-1])
    wrong_name = next(name for name, key in KEYS.items() if key == wrong)
    expect(page.locator("#item-slot .undo-hint")).to_contain_text(wrong_name)
    # the undone label leaves "Your recent labels" at once, not at the next reload
    expect(page.locator(f'#recent-labels .recent-text[title^="Item #{labelled[-1]}:"]')
           ).to_have_count(0)
    expect(page.locator("#recent-labels .recent-text")).to_have_count(4)
    _press(page, right)  # label it again, correctly
    skipped, _ = _press(page, "s")
    help_dialog = page.locator("#help-dialog")
    page.keyboard.press("?")
    expect(help_dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(help_dialog).to_be_hidden()
    for _ in range(5):
        item, _ = _press(page, _right_key(page))
        labelled.append(item)
    # the tenth live label closes the batch by itself and asks for a retrain
    expect(page.locator("#save-state")).to_have_text("All labels saved", timeout=20_000)
    expect(page.locator(".toast")).to_contain_text("retraining")
    expect(page.locator(".batch-count")).to_have_text("0 / 10")

    with live.sessions() as db:
        live_labels = db.scalars(select(Annotation).where(
            Annotation.project_id == project_id, Annotation.source == "ui",
            Annotation.deleted.is_(False), Annotation.superseded_by_id.is_(None))).all()
        assert len(live_labels) == 10
        assert all(a.duration_ms is not None and a.duration_ms > 0 for a in live_labels)
        assert db.scalar(select(func.count()).select_from(Annotation).where(
            Annotation.project_id == project_id, Annotation.deleted.is_(True))) == 1
        assert str(skipped) not in {str(a.item_id) for a in live_labels}
        run = db.scalars(select(TrainingRun).where(TrainingRun.project_id == project_id,
                                                   TrainingRun.kind == RUN_RETRAIN)).one()
        assert run.status in ("queued", "running", "succeeded")

    # the retrain runs in the worker while the annotator keeps going; the banner says so
    live.wait_for_worker()
    expect(page.locator("#queue-status")).to_contain_text("Fresh queue", timeout=RETRAIN_TIMEOUT)
    with live.sessions() as db:
        project = db.get(Project, project_id)
        assert project is not None and project.queue_version >= 1
        assert project.current_model_version_id is not None
        statuses = db.scalars(select(TrainingRun.status).where(
            TrainingRun.project_id == project_id, TrainingRun.kind == RUN_RETRAIN)).all()
        assert RUN_SUCCEEDED in statuses

    # items now come from the new queue, with the model's reasons next to them
    for _ in range(3):
        _press(page, _right_key(page))
        if page.locator("#item-slot .why-facts").count():
            break
    expect(page.locator("#item-slot .why-facts")).to_contain_text("entropy")
    expect(page.locator("#item-slot .pred-bars li")).to_have_count(3)
    expect(page.locator("#recent-labels li").first).to_be_visible()
    # the no-script "Change" buttons stay hidden after htmx has refreshed the list
    expect(page.locator("#recent-labels .recent-change-fallback").first).to_be_attached()
    expect(page.locator("#recent-labels").get_by_role("button", name="Change")).to_have_count(0)
    wait_until(lambda: page.locator("#save-state").inner_text() == "All labels saved",
               "labels to be saved")
    screenshot(page, "annotator")
    assert re.match(r"\d+ / 10", page.locator(".batch-count").inner_text())
