"""A lead reads a multi-label project's dashboard in real Chromium: the live head's set metrics
on the dev set (fitted here by the worker's own refit code on the stack's database and artifact
store), per-label F1 with support, and the label co-occurrence of the labelled pool."""

from __future__ import annotations

import hashlib
import random

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from app.db.models import (
    SPLIT_DEV,
    SPLIT_POOL,
    TASK_MULTI_LABEL,
    Annotation,
    AnnotationLabel,
    Item,
    Label,
    LiveHeadState,
    Membership,
    Project,
)
from tests.browser.conftest import BrowserPage, LiveStack, screenshot, sign_in
from tests.worker.ml.tiny import FILLER, LABEL_NAMES, TOPICS
from worker.tasks.live_refit import refit_live_head

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


def _corpus(n: int, seed: int) -> list[tuple[str, list[int]]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        topics = sorted(rng.sample(range(3), rng.choice([0, 1, 1, 2])))
        words = [rng.choice(TOPICS[LABEL_NAMES[t]]) for t in topics for _ in range(3)]
        words += rng.sample(FILLER, 4)
        rng.shuffle(words)
        rows.append((" ".join(words) + f" {i}", topics))
    return rows


def _seed(live: LiveStack) -> tuple[int, list[list[int]]]:
    with live.sessions() as db:
        tickets = db.get(Project, live.seeded.tickets_id)
        assert tickets is not None
        project = Project(name="Tags", created_by_id=live.seeded.user_ids["lead"],
                          task_type=TASK_MULTI_LABEL, base_model=tickets.base_model,
                          overlap_rate=0.0, gold_rate=0.0, batch_size=10)
        db.add(project)
        db.flush()
        labels = [Label(project_id=project.id, name=n, position=i)
                  for i, n in enumerate(LABEL_NAMES)]
        db.add_all(labels)
        db.add(Membership(project_id=project.id, user_id=live.seeded.user_ids["lead"],
                          role="lead"))
        db.flush()
        pool_sets = []
        for n, (text, topics) in enumerate(_corpus(52, seed=7)):
            split = SPLIT_POOL if n < 40 else SPLIT_DEV
            item = Item(project_id=project.id, text=text, split=split,
                        content_hash=hashlib.sha256(text.encode()).hexdigest())
            db.add(item)
            db.flush()
            if split == SPLIT_POOL and n >= 24:
                continue  # unlabelled pool items: the queue
            annotation = Annotation(project_id=project.id, item_id=item.id, label_id=None,
                                    annotator_id=live.seeded.user_ids["lead"])
            db.add(annotation)
            db.flush()
            db.add_all([AnnotationLabel(annotation_id=annotation.id, label_id=labels[t].id)
                        for t in topics])
            if split == SPLIT_POOL:
                pool_sets.append(topics)
        db.commit()
        return project.id, pool_sets


def test_the_dashboard_shows_set_metrics_per_label_f1_and_co_occurrence(
    live: LiveStack, browser_page: BrowserPage
) -> None:
    project_id, pool_sets = _seed(live)
    result = refit_live_head(project_id, live.settings, live.sessions)
    assert result is not None and result.labels_used == 24
    with live.sessions() as db:
        state = db.scalars(select(LiveHeadState)
                           .where(LiveHeadState.project_id == project_id)).one()
        scores = dict(state.scores)
    page = browser_page.page
    sign_in(page, live, "lead")
    page.goto(f"{live.url}/projects/{project_id}/dashboard")
    metrics = page.locator("[data-testid=multi-metrics]")
    expect(metrics).to_be_visible()
    expect(metrics).to_contain_text(f"{scores['micro_f1']:.3f}")
    expect(metrics).to_contain_text(f"{scores['hamming_loss']:.3f}")
    expect(page.locator("#multi-label")).to_contain_text("dev set, 12 items")
    expect(page.locator("[data-testid=multi-per-label] li")).to_have_count(3)
    for fill in page.locator("[data-testid=multi-per-label] .fill").all():  # the bars are drawn
        colour = fill.evaluate("e => getComputedStyle(e).backgroundColor")
        assert colour not in ("rgba(0, 0, 0, 0)", "transparent"), colour
    expect(page.locator("#confusion")).to_have_count(0)
    cells = page.locator("[data-testid=co-occurrence] td")
    expect(cells).to_have_count(9)
    for j, name in enumerate(LABEL_NAMES):
        diagonal = sum(j in s for s in pool_sets)
        expect(cells.nth(4 * j)).to_have_text(str(diagonal))
        expect(cells.nth(4 * j)).to_have_attribute(
            "title", f"{name} and {name}: {diagonal} items")
    none = sum(not s for s in pool_sets)
    expect(page.locator("#co-occurrence")).to_contain_text("24 items")
    expect(page.locator("#co-occurrence")).to_contain_text(f"{none} with none")
    expect(page.locator("#distribution .hbars li")).to_have_count(3)
    screenshot(page, "dashboard-multi-label", full_page=True)
