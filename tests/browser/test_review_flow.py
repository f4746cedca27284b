"""A reviewer works through the review queue with the keyboard in Chromium: ``a`` accepts,
``c`` then a number changes the label, ``s`` writes a note and Enter sends the item back; an
annotator of the same project is refused the page. Item text with markup stays text."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from app.db.models import (
    ROLE_ANNOTATOR,
    ROLE_REVIEWER,
    Annotation,
    AuditEvent,
    Item,
    Membership,
    ReviewDecision,
    User,
)
from app.domain.imports import content_hash
from app.domain.projects import ProjectSettings, create_project, get_labels
from tests.browser.conftest import BrowserPage, LiveStack, screenshot, sign_in

pytestmark = [pytest.mark.browser]

# Eleven labels: the last one, "account", has the key "q" (1-9, 0, then q), as when annotating.
LABELS = ("billing", "bug", "shipping", "refund", "privacy", "outage", "pricing", "feature",
          "docs", "spam", "account")
TEXTS = (
    "Refund the duplicate charge on invoice 12, please.",
    'The export button crashes the page <img src=x onerror="alert(1)">',
    "I cannot sign in after the password reset.",
)


def _seed_review_project(live: LiveStack) -> tuple[int, list[int]]:
    """A project of its own: the lead leads, ann2 reviews, annotator and ann3 disagree on all
    three items."""
    with live.sessions() as db:
        users = {u.email: u for u in db.scalars(select(User))}
        lead = users[live.seeded.users["lead"]]
        project = create_project(
            db, creator=lead, settings=ProjectSettings(name="Review keyboard", labels=LABELS)
        )
        project.annotations_per_item = 2
        db.add(
            Membership(
                project_id=project.id, user_id=live.seeded.user_ids["ann2"], role=ROLE_REVIEWER
            )
        )
        for key in ("annotator", "ann3"):
            db.add(
                Membership(
                    project_id=project.id, user_id=live.seeded.user_ids[key], role=ROLE_ANNOTATOR
                )
            )
        labels = get_labels(db, project.id)
        items = [Item(project_id=project.id, text=t, content_hash=content_hash(t)) for t in TEXTS]
        db.add_all(items)
        db.flush()
        for item in items:
            db.add(
                Annotation(
                    project_id=project.id,
                    item_id=item.id,
                    label_id=labels[0].id,
                    annotator_id=live.seeded.user_ids["annotator"],
                )
            )
            db.add(
                Annotation(
                    project_id=project.id,
                    item_id=item.id,
                    label_id=labels[1].id,
                    annotator_id=live.seeded.user_ids["ann3"],
                )
            )
        db.commit()
        return project.id, [item.id for item in items]


def _decision(live: LiveStack, item_id: int) -> ReviewDecision | None:
    with live.sessions() as db:
        return db.scalars(
            select(ReviewDecision)
            .where(ReviewDecision.item_id == item_id)
            .order_by(ReviewDecision.id.desc())
        ).first()


def test_reviewer_accepts_changes_and_sends_back_with_the_keyboard(
    live: LiveStack, browser_page: BrowserPage
) -> None:
    page = browser_page.page
    project_id, (first, second, third) = _seed_review_project(live)
    sign_in(page, live, "ann2")
    page.goto(f"{live.url}/projects/{project_id}/review")
    entries = page.locator("#review-disagreement article.review-entry")
    expect(entries).to_have_count(3)
    expect(
        page.locator(".project-nav").get_by_role("link", name="Review", exact=True)
    ).to_be_visible()
    expect(page.locator("#review-keys")).to_contain_text("send back")
    expect(entries.nth(1)).to_contain_text('<img src=x onerror="alert(1)">')  # shown as text
    expect(page.locator("article.review-entry.current")).to_have_attribute(
        "data-item-id", str(first)
    )
    screenshot(page, "review-queue")

    # a: accept the first item's label (a tie: the most recent annotation, "bug").
    page.keyboard.press("a")
    expect(page.get_by_text(f"Item {first} accepted as bug.")).to_be_visible()
    decision = _decision(live, first)
    assert decision is not None and (decision.action, decision.reviewer_id) == (
        "accept",
        live.seeded.user_ids["ann2"],
    )
    expect(entries).to_have_count(2)

    # c then q: change the (now first) second item to the eleventh label, "account".
    expect(page.locator("article.review-entry.current")).to_have_attribute(
        "data-item-id", str(second)
    )
    page.keyboard.press("c")
    current = page.locator("article.review-entry.current")
    expect(current).to_have_class("review-entry current changing")
    page.keyboard.press("q")
    expect(page.get_by_text(f"Item {second} relabelled as account.")).to_be_visible()
    decision = _decision(live, second)
    assert decision is not None and decision.action == "change"

    # s, type a note, Enter: send the last item back.
    expect(page.locator("article.review-entry.current")).to_have_attribute(
        "data-item-id", str(third)
    )
    page.keyboard.press("s")
    note = page.locator("article.review-entry.current textarea[name=note]")
    expect(note).to_be_focused()
    page.keyboard.type("Password problems are account, not bug.")
    page.keyboard.press("Enter")
    expect(page.get_by_text(f"Item {third} sent back.")).to_be_visible()
    expect(page.locator("#review-empty")).to_be_visible()
    decision = _decision(live, third)
    assert decision is not None and decision.action == "send_back"
    assert decision.note == "Password problems are account, not bug."
    with live.sessions() as db:
        returned = db.scalars(select(Annotation).where(Annotation.item_id == third)).all()
        assert len(returned) == 2 and all(a.deleted for a in returned)
        audited = db.scalars(
            select(AuditEvent.item_id).where(
                AuditEvent.project_id == project_id, AuditEvent.action.like("review.%")
            )
        ).all()
        assert sorted(audited) == sorted([first, second, third])
    expect(page.locator("#review-recent tbody tr")).to_have_count(3)
    screenshot(page, "review-after")

    # An annotator of the project: no Review tab, and the page is refused.
    page.context.clear_cookies()
    sign_in(page, live, "annotator")
    page.goto(f"{live.url}/projects/{project_id}/annotate")
    expect(page.locator(".project-nav").get_by_role("link", name="Annotate")).to_be_visible()
    expect(
        page.locator(".project-nav").get_by_role("link", name="Review", exact=True)
    ).to_have_count(0)
    response = page.goto(f"{live.url}/projects/{project_id}/review")
    assert response is not None and response.status == 403


def test_reviewer_changes_a_label_set_with_the_keyboard_on_a_multi_label_project(
    live: LiveStack, browser_page: BrowserPage
) -> None:
    """c, then the labels' keys tick and untick them (the boxes show it), Escape leaves the
    change, Enter saves the ticked set as the decision."""
    from app.db.models import TASK_MULTI_LABEL
    from app.domain.annotation import record_label
    from app.domain.review import decision_sets

    page = browser_page.page
    with live.sessions() as db:
        users = {u.id: u for u in db.scalars(select(User))}
        lead = users[live.seeded.user_ids["lead"]]
        project = create_project(db, creator=lead, settings=ProjectSettings(
            name="Review sets", labels=("billing", "bug", "feature"),
            task_type=TASK_MULTI_LABEL))
        project.annotations_per_item = 2
        db.add(Membership(project_id=project.id, user_id=live.seeded.user_ids["ann2"],
                          role=ROLE_REVIEWER))
        for key in ("annotator", "ann3"):
            db.add(Membership(project_id=project.id, user_id=live.seeded.user_ids[key],
                              role=ROLE_ANNOTATOR))
        ids = {label.name: label.id for label in get_labels(db, project.id)}
        text = "Charged twice <b>and</b> the invoice page crashes"
        item = Item(project_id=project.id, text=text, content_hash=content_hash(text))
        db.add(item)
        db.flush()
        record_label(db, project, users[live.seeded.user_ids["annotator"]], item_id=item.id,
                     label_ids=[ids["billing"]])
        record_label(db, project, users[live.seeded.user_ids["ann3"]], item_id=item.id,
                     label_ids=[ids["bug"], ids["feature"]])
        db.commit()
        project_id, item_id = project.id, item.id

    sign_in(page, live, "ann2")
    page.goto(f"{live.url}/projects/{project_id}/review")
    expect(page.locator("#review-keys")).to_contain_text("change the set")
    entry = page.locator(f'article.review-entry[data-item-id="{item_id}"]')
    expect(entry).to_have_class("review-entry current")
    expect(entry).to_contain_text("Charged twice <b>and</b>")  # shown as text
    box = {name: entry.locator(f'input[type="checkbox"][value="{ids[name]}"]')
           for name in ("billing", "bug", "feature")}
    shown = {name: b.is_checked() for name, b in box.items()}  # the majority set, as served
    page.keyboard.press("1")  # not changing yet: a label key does nothing
    assert {name: b.is_checked() for name, b in box.items()} == shown
    page.keyboard.press("c")
    expect(entry).to_have_class("review-entry current changing")
    for key, name in (("1", "billing"), ("3", "feature")):
        page.keyboard.press(key)
        expect(box[name]).to_be_checked(checked=not shown[name])
    page.keyboard.press("1")  # and back
    expect(box["billing"]).to_be_checked(checked=shown["billing"])
    expect(entry).to_have_class("review-entry current changing")  # still changing
    screenshot(page, "review-set-changing")
    # feature flipped once, billing twice (back), bug untouched
    wanted = sorted(ids[n] for n in ("billing", "bug", "feature") if shown[n] != (n == "feature"))
    page.keyboard.press("Enter")
    expect(page.get_by_text(f"Item {item_id} relabelled")).to_be_visible()
    decision = _decision(live, item_id)
    assert decision is not None and decision.action == "change"
    with live.sessions() as db:
        assert sorted(decision_sets(db, [decision.id])[decision.id]) == wanted
