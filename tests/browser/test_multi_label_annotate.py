"""An annotator labels a multi-label project in real Chromium: keys toggle labels (aria-pressed),
Enter submits the set or accepts the model's proposed set, a key answers "None of these", undo
brings the set back; clicks do the same, and a recent set is changed. After each step the
stored set is read from the database."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from app.db.models import (
    SPLIT_POOL,
    TASK_MULTI_LABEL,
    Annotation,
    Item,
    Label,
    Membership,
    Project,
    QueueEntry,
)
from app.domain.annotation.label_sets import label_sets
from tests.browser.conftest import BrowserPage, LiveStack, screenshot, sign_in, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

LABELS = ("billing", "bug", "feature")
KEY = {"billing": "1", "bug": "2", "feature": "3"}
COLOURS = ("#4f46e5", "#dc2626", "#059669")


@dataclass(frozen=True)
class Seeded:
    project_id: int
    items: dict[str, int]
    """Item name (A, B, ...) -> id."""


def _predicted(probs: dict[str, float], threshold: float = 0.5) -> list[dict[str, Any]]:
    """A queue entry's predictions in the worker's multi-label format, highest first."""
    ordered = sorted(probs.items(), key=lambda kv: -kv[1])
    return [{"label": name, "prob": p, "threshold": threshold, "proposed": p >= threshold}
            for name, p in ordered]


def _seed(live: LiveStack, name: str, items: dict[str, tuple[str, dict[str, float] | None]]
          ) -> Seeded:
    """A multi-label project; items with predictions are queued in the order given, the others
    wait in the pool (handed out at random once the queue is done)."""
    with live.sessions() as db:
        project = Project(name=name, created_by_id=live.seeded.user_ids["lead"],
                          task_type=TASK_MULTI_LABEL, batch_size=50, label_budget=200,
                          overlap_rate=0.0, gold_rate=0.0)
        db.add(project)
        db.flush()
        db.add_all([Label(project_id=project.id, name=n, position=i, color=COLOURS[i],
                          shortcut=KEY[n]) for i, n in enumerate(LABELS)])
        db.add_all([
            Membership(project_id=project.id, user_id=live.seeded.user_ids["lead"], role="lead"),
            Membership(project_id=project.id, user_id=live.seeded.user_ids["annotator"],
                       role="annotator"),
        ])
        rows = {key: Item(project_id=project.id, text=text, split=SPLIT_POOL,
                          content_hash=hashlib.sha256(text.encode()).hexdigest())
                for key, (text, _) in items.items()}
        db.add_all(rows.values())
        db.flush()
        queued = [(key, probs) for key, (_, probs) in items.items() if probs is not None]
        for rank, (key, probs) in enumerate(queued):
            assert probs is not None
            db.add(QueueEntry(project_id=project.id, queue_version=1, item_id=rows[key].id,
                              rank=rank, score=0.9 - rank / 10, strategy="label_uncertainty",
                              reason="labels close to their thresholds",
                              predicted=_predicted(probs), neighbours=[]))
        project.queue_version = 1
        db.commit()
        return Seeded(project.id, {key: row.id for key, row in rows.items()})


def _stored(live: LiveStack, item_id: int) -> list[str] | None:
    """The names in the item's live annotation's set; None when it has no live annotation."""
    with live.sessions() as db:
        annotation = db.scalars(select(Annotation).where(
            Annotation.item_id == item_id, Annotation.deleted.is_(False),
            Annotation.superseded_by_id.is_(None))).first()
        if annotation is None:
            return None
        assert annotation.label_id is None
        names = dict(db.execute(select(Label.id, Label.name)).tuples().all())
        return [names[i] for i in label_sets(db, [annotation.id])[annotation.id]]


def _wait_stored(live: LiveStack, item_id: int, expected: list[str] | None) -> None:
    wait_until(lambda: _stored(live, item_id) == expected,
               f"item {item_id} to be stored as {expected}", timeout=20)


def _current(page: Any) -> int:
    return int(page.locator("#item-slot .item-card").get_attribute("data-item-id") or 0)


def _wait_for_item(page: Any, item_id: int) -> None:
    expect(page.locator("#item-slot .item-card")).to_have_attribute("data-item-id", str(item_id))


def _expect_pressed(page: Any, pressed: set[str]) -> None:
    for name in LABELS:
        toggle = page.locator(f'#item-slot .label-toggle[data-key="{KEY[name]}"]')
        expect(toggle).to_have_attribute("aria-pressed", "true" if name in pressed else "false")


def test_keyboard_toggles_enter_proposed_set_none_of_these_and_undo(
    live: LiveStack, browser_page: BrowserPage
) -> None:
    seeded = _seed(live, "Ticket tags (keys)", {
        "A": ("Charged twice, and the invoice page crashes.", {"billing": 0.4, "bug": 0.3,
                                                               "feature": 0.1}),
        "B": ("The export crashes; please add a CSV option.", {"bug": 0.83, "feature": 0.61,
                                                              "billing": 0.05}),
        "C": ("Thanks for the quick help last week!", {"billing": 0.52, "bug": 0.2,
                                                       "feature": 0.1}),
        "D": ("Where is the API documentation?", {"feature": 0.3, "bug": 0.2, "billing": 0.1}),
    })
    items = seeded.items
    page = browser_page.page
    sign_in(page, live, "annotator")
    page.goto(f"{live.url}/projects/{seeded.project_id}/annotate")
    _wait_for_item(page, items["A"])
    expect(page.locator("#item-slot .none-of-these")).to_contain_text("0")
    expect(page.locator("#item-slot .none-of-these")).to_contain_text("None of these")

    # A: nothing proposed; toggle two labels on with their keys, Enter submits the set
    _expect_pressed(page, set())
    page.keyboard.press("1")
    page.keyboard.press("3")
    _expect_pressed(page, {"billing", "feature"})
    page.keyboard.press("Enter")
    _wait_for_item(page, items["B"])
    _wait_stored(live, items["A"], ["billing", "feature"])

    # B: the proposed set is preselected; Enter alone accepts it unchanged
    _expect_pressed(page, {"bug", "feature"})
    expect(page.locator("#item-slot .why .pred-bars li.proposed")).to_have_count(2)
    expect(page.locator("#item-slot .why")).to_contain_text("threshold 50%")
    screenshot(page, "annotator-multi-label")
    page.keyboard.press("Enter")
    _wait_for_item(page, items["C"])
    _wait_stored(live, items["B"], ["bug", "feature"])

    # z: B comes back with its set selected; change it and submit again
    page.keyboard.press("z")
    _wait_for_item(page, items["B"])
    _expect_pressed(page, {"bug", "feature"})
    expect(page.locator("#item-slot .undo-hint")).to_contain_text("bug, feature")
    _wait_stored(live, items["B"], None)
    page.keyboard.press("2")
    _expect_pressed(page, {"feature"})
    page.keyboard.press("Enter")
    _wait_for_item(page, items["C"])
    _wait_stored(live, items["B"], ["feature"])

    # C: billing is proposed, but the key 0 answers "None of these": the empty set
    _expect_pressed(page, {"billing"})
    page.keyboard.press("0")
    _wait_for_item(page, items["D"])
    _wait_stored(live, items["C"], [])

    # z again: C comes back with the empty set; Enter alone puts it back
    page.keyboard.press("z")
    _wait_for_item(page, items["C"])
    _expect_pressed(page, set())
    expect(page.locator("#item-slot .undo-hint")).to_contain_text("none of these")
    _wait_stored(live, items["C"], None)
    page.keyboard.press("Enter")
    _wait_for_item(page, items["D"])
    _wait_stored(live, items["C"], [])
    expect(page.locator("#save-state")).to_have_text("All labels saved")
    recent = page.locator("#recent-labels li")
    expect(recent.filter(has_text="Thanks for the quick help")).to_contain_text("none of these")
    expect(recent.filter(has_text="The export crashes")).to_contain_text("feature")


def test_clicks_a_random_pick_and_changing_a_recent_set(
    live: LiveStack, browser_page: BrowserPage
) -> None:
    seeded = _seed(live, "Ticket tags (clicks)", {
        "E": ("My card was declined and the retry button does nothing.", {"bug": 0.7,
                                                                         "billing": 0.45,
                                                                         "feature": 0.1}),
        "F": ("Could you add dark mode to the dashboard?", None),
    })
    items = seeded.items
    page = browser_page.page
    sign_in(page, live, "annotator")
    page.goto(f"{live.url}/projects/{seeded.project_id}/annotate")
    _wait_for_item(page, items["E"])

    # E: clicks toggle (the proposed bug off, billing on); the button submits the set
    _expect_pressed(page, {"bug"})
    page.locator('#item-slot .label-toggle[data-key="1"]').click()
    page.locator('#item-slot .label-toggle[data-key="2"]').click()
    _expect_pressed(page, {"billing"})
    page.locator("#item-slot .submit-set").click()
    _wait_for_item(page, items["F"])
    _wait_stored(live, items["E"], ["billing"])

    # F: a random pick has nothing preselected, and Enter on nothing asks for an answer
    expect(page.locator("#item-slot .pill-muted")).to_have_text("random pick")
    _expect_pressed(page, set())
    page.keyboard.press("Enter")
    expect(page.locator("#item-slot [data-set-hint]")).to_contain_text("Nothing is selected")
    assert _current(page) == items["F"] and _stored(live, items["F"]) is None
    page.locator("#item-slot .none-of-these").click()
    expect(page.locator("#item-slot .item-done")).to_be_visible()
    _wait_stored(live, items["F"], [])

    # the recent list shows the sets; change E's set there
    entry = page.locator("#recent-labels li").filter(has_text="My card was declined")
    expect(entry.locator(".recent-set")).to_have_text("billing")
    entry.locator("summary").click()
    entry.get_by_label("feature").check()
    entry.get_by_role("button", name="Save").click()
    _wait_stored(live, items["E"], ["billing", "feature"])
    entry = page.locator("#recent-labels li").filter(has_text="My card was declined")
    expect(entry.locator(".recent-set")).to_contain_text("feature")
