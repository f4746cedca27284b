"""The annotator view of a multi-label project over HTTP: toggles, "None of these", the model's
probabilities with thresholds and its proposed set preselected, label sets stored by the forms,
undo bringing the set back, recent sets and their edit, and hostile label text shown as text."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import (
    ROLE_ANNOTATOR,
    TASK_MULTI_LABEL,
    Annotation,
    Item,
    Label,
    Project,
    QueueEntry,
)
from app.domain.annotation.label_sets import label_sets
from app.jobs import Job, recording_jobs
from tests.factories import UserClient, login_client, make_items, make_project

HTMX = {"HX-Request": "true"}
LABELS = ("billing", "bug", "feature")
XSS = "<script>alert(1)</script>"


@pytest.fixture()
def sent() -> Iterator[list[Job]]:
    with recording_jobs() as jobs:
        yield jobs


@pytest.fixture()
def project(db: Session) -> Project:
    project = make_project(db, labels=LABELS, task_type=TASK_MULTI_LABEL)
    project.batch_size = 50
    return project


def _annotator(app: FastAPI, db: Session, project: Project) -> UserClient:
    return login_client(app, db, role=ROLE_ANNOTATOR, project=project)


def _ids(db: Session, project: Project) -> dict[str, int]:
    return dict(db.execute(select(Label.name, Label.id)
                           .where(Label.project_id == project.id)).tuples().all())


def _item_id(html: str) -> int:
    match = re.search(r'data-item-id="(\d+)"', html)
    assert match is not None, html[:500]
    return int(match.group(1))


def _pressed(html: str) -> dict[str, str]:
    """Label name -> aria-pressed of its toggle on the (first) item card."""
    card = html[html.index('class="item-card"'):]
    card = card[:card.index("</article>")]
    found = re.findall(r'<button type="button" class="label-btn label-toggle"[^>]*'
                       r'aria-pressed="(true|false)".*?<span class="label-name">(.*?)</span>',
                       card, flags=re.S)
    return {name: pressed for pressed, name in found}


def _queue(db: Session, project: Project, items: list[Item], predicted: list[dict[str, Any]],
           neighbours: list[dict[str, Any]] = ()) -> None:  # type: ignore[assignment]
    """Queue entries in the format the worker writes for a multi-label project."""
    version = project.queue_version + 1
    for rank, item in enumerate(items):
        db.add(QueueEntry(project_id=project.id, queue_version=version, item_id=item.id,
                          rank=rank, score=0.5, strategy="label_uncertainty",
                          reason="bug and billing are close to their thresholds",
                          predicted=predicted, neighbours=list(neighbours)))
    project.queue_version = version
    db.flush()


PREDICTED = [
    {"label": "bug", "prob": 0.83, "threshold": 0.41, "proposed": True},
    {"label": "billing", "prob": 0.55, "threshold": 0.5, "proposed": True},
    {"label": "feature", "prob": 0.12, "threshold": 0.35, "proposed": False},
]


def _stored(db: Session, project: Project) -> dict[int, list[str]]:
    names = {v: k for k, v in _ids(db, project).items()}
    live = db.scalars(select(Annotation).where(
        Annotation.project_id == project.id, Annotation.deleted.is_(False),
        Annotation.superseded_by_id.is_(None))).all()
    sets = label_sets(db, [a.id for a in live])
    return {a.item_id: [names[i] for i in sets[a.id]] for a in live}


def test_random_pick_shows_toggles_none_of_these_and_nothing_preselected(
    app: FastAPI, db: Session, project: Project
) -> None:
    make_items(db, project, ["the invoice is wrong"])
    page = _annotator(app, db, project).get(f"/projects/{project.id}/annotate").text
    assert "random pick" in page
    assert _pressed(page) == {"billing": "false", "bug": "false", "feature": "false"}
    for key, name in (("1", "billing"), ("2", "bug"), ("3", "feature")):
        assert re.search(rf'data-key="{key}" aria-keyshortcuts="{key}">\s*<kbd>{key}</kbd>'
                         rf'<span class="label-name">{name}</span>', page)
    assert re.search(r'class="label-btn none-of-these"\s+data-key="0" aria-keyshortcuts="0"',
                     page)
    assert "<kbd>0</kbd><span class=\"label-name\">None of these</span>" in page
    assert 'aria-keyshortcuts="Enter"' in page and "Submit set" in page
    assert "data-multi-label" in page and "data-set-preset" not in page
    assert "data-guess-label-id" not in page and "Accept guess" not in page
    # without the script, checkboxes replace the toggles (a style only <noscript> turns on)
    assert 'type="checkbox" name="label_ids"' in page
    noscript = page[page.index("<noscript><style>"):]
    noscript = noscript[:noscript.index("</noscript>")]
    assert ".label-toggles { display: none; }" in noscript
    assert ".label-set-fallback { display: block; }" in noscript
    help_dialog = page[page.index('id="help-dialog"'):]
    assert "<kbd>Enter</kbd></td><td>Submit the selected labels" in help_dialog
    assert "<kbd>0</kbd></td><td>None of these" in help_dialog
    assert "Toggle billing" in help_dialog


def test_the_none_of_these_key_avoids_a_key_a_label_uses(app: FastAPI, db: Session) -> None:
    names = tuple(f"topic {i}" for i in range(10))  # the tenth label gets the key 0
    project = make_project(db, labels=names, task_type=TASK_MULTI_LABEL)
    make_items(db, project, ["text"])
    page = _annotator(app, db, project).get(f"/projects/{project.id}/annotate").text
    assert 'data-key="0" aria-keyshortcuts="0">' in page  # topic 9's toggle
    assert re.search(r'none-of-these"\s+data-key="n" aria-keyshortcuts="n"', page)


def test_probabilities_thresholds_and_the_proposed_set_preselected(
    app: FastAPI, db: Session, project: Project
) -> None:
    items = make_items(db, project, ["charged twice, then the app crashed", "earlier ticket",
                                     "older ticket"])
    _queue(db, project, items[:1], PREDICTED, neighbours=[
        {"item_id": items[1].id, "label": "billing, bug", "labels": ["billing", "bug"],
         "similarity": 0.71},
        {"item_id": items[2].id, "label": "none of these", "labels": [], "similarity": 0.52},
    ])
    page = _annotator(app, db, project).get(f"/projects/{project.id}/annotate").text
    assert _item_id(page) == items[0].id
    assert _pressed(page) == {"billing": "true", "bug": "true", "feature": "false"}
    assert "data-set-preset" in page
    assert "The model proposes\n  <strong>bug, billing</strong>" in page
    why = page[page.index('class="why"'):]
    bars = re.findall(r'<li( class="proposed")? data-pred-label="(\w+)">.*?'
                      r'<span class="pred-value">(\d+)%</span>\s*'
                      r'<span class="pred-note muted small">(.*?)</span>', why, flags=re.S)
    assert [(name, value, note, bool(proposed)) for proposed, name, value, note in bars] == [
        ("bug", "83", "threshold 41% · <strong>proposed</strong>", True),
        ("billing", "55", "threshold 50% · <strong>proposed</strong>", True),
        ("feature", "12", "threshold 35%", False),
    ]
    assert 'class="pred-threshold" style="left: 41.0%"' in why
    assert 'title="model: 83%, threshold 41%">83%</span>' in page  # on the bug toggle
    neighbours = why[why.index('class="neighbours"'):]
    assert re.search(r'<span class="chip-set"><span class="chip" [^>]*>billing</span>'
                     r'<span class="chip" [^>]*>bug</span></span>', neighbours)
    assert '<span class="chip chip-none">none of these</span>' in neighbours


def test_a_proposal_reached_by_threshold_alone_is_preselected(
    app: FastAPI, db: Session, project: Project
) -> None:
    """An entry without ``proposed`` flags: a label is proposed when it reaches its threshold."""
    items = make_items(db, project, ["text"])
    _queue(db, project, items, [{"label": "feature", "prob": 0.4, "threshold": 0.4},
                                {"label": "bug", "prob": 0.39, "threshold": 0.4}])
    page = _annotator(app, db, project).get(f"/projects/{project.id}/annotate").text
    assert _pressed(page) == {"billing": "false", "bug": "false", "feature": "true"}


def test_the_forms_store_a_set_and_the_empty_set(
    app: FastAPI, db: Session, project: Project, sent: list[Job]
) -> None:
    client = _annotator(app, db, project)
    make_items(db, project, ["one", "two"])
    base = f"/projects/{project.id}/annotate"
    ids = _ids(db, project)
    first = _item_id(client.get(base).text)
    form = {"label_ids": [str(ids["feature"]), str(ids["billing"])], "key": "k-1",
            "duration_ms": "2100"}
    for _ in range(2):  # a retried request stores it once
        response = client.post(f"{base}/items/{first}/label", data=form, headers=HTMX)
        assert response.status_code == 200, response.text
    second = _item_id(client.get(f"{base}/next?exclude={first}", headers=HTMX).text)
    none = client.post(f"{base}/items/{second}/label", data={"key": "k-2"}, headers=HTMX)
    assert none.status_code == 200, none.text
    assert _stored(db, project) == {first: ["billing", "feature"], second: []}
    assert db.scalar(select(func.count()).select_from(Annotation)) == 2
    recent = none.text[none.text.index('id="recent-labels"'):]
    assert '<span class="chip chip-none">none of these</span>' in recent
    assert re.search(r'<span class="recent-set" data-label-set><span class="chip" [^>]*>billing'
                     r'</span><span class="chip" [^>]*>feature</span></span>', recent)


def test_a_single_label_answer_is_refused_and_stores_nothing(
    app: FastAPI, db: Session, project: Project
) -> None:
    client = _annotator(app, db, project)
    make_items(db, project, ["one"])
    base = f"/projects/{project.id}/annotate"
    item = _item_id(client.get(base).text)
    response = client.post(f"{base}/items/{item}/label",
                           data={"label_id": str(_ids(db, project)["bug"])}, headers=HTMX)
    assert response.status_code == 422
    assert "multi-label" in response.headers["HX-Trigger"]
    foreign = make_project(db, labels=LABELS, task_type=TASK_MULTI_LABEL)
    response = client.post(f"{base}/items/{item}/label",
                           data={"label_ids": str(_ids(db, foreign)["bug"])}, headers=HTMX)
    assert response.status_code == 422
    assert db.scalar(select(func.count()).select_from(Annotation)) == 0


def test_undo_brings_the_set_back_selected(
    app: FastAPI, db: Session, project: Project, sent: list[Job]
) -> None:
    client = _annotator(app, db, project)
    make_items(db, project, ["one"])
    base = f"/projects/{project.id}/annotate"
    ids = _ids(db, project)
    item = _item_id(client.get(base).text)
    client.post(f"{base}/items/{item}/label",
                data={"label_ids": [str(ids["bug"]), str(ids["feature"])]},
                headers=HTMX)
    undone = client.post(f"{base}/undo", headers=HTMX)
    assert undone.status_code == 200 and _item_id(undone.text) == item
    assert _pressed(undone.text) == {"billing": "false", "bug": "true", "feature": "true"}
    assert "You had chosen\n  <strong>bug, feature</strong>" in undone.text
    assert "data-set-preset" in undone.text  # Enter puts the set back as it was
    client.post(f"{base}/items/{item}/label", headers=HTMX)  # none of these
    again = client.post(f"{base}/undo", headers=HTMX)
    assert _pressed(again.text) == {"billing": "false", "bug": "false", "feature": "false"}
    assert "<strong>none of these</strong>" in again.text


def test_a_recent_set_can_be_changed(
    app: FastAPI, db: Session, project: Project, sent: list[Job]
) -> None:
    client = _annotator(app, db, project)
    make_items(db, project, ["one"])
    base = f"/projects/{project.id}/annotate"
    ids = _ids(db, project)
    item = _item_id(client.get(base).text)
    client.post(f"{base}/items/{item}/label", data={"label_ids": str(ids["bug"])},
                headers=HTMX)
    first = db.scalars(select(Annotation)).one()
    page = client.get(base).text
    recent = page[page.index('id="recent-labels"'):]
    assert f'hx-post="{base}/annotations/{first.id}"' in recent
    assert re.search(rf'name="label_ids" value="{ids["bug"]}" checked> bug', recent)
    assert re.search(rf'name="label_ids" value="{ids["billing"]}"> billing', recent)
    changed = client.post(f"{base}/annotations/{first.id}",
                          data={"label_ids": [str(ids["billing"]), str(ids["bug"])]},
                          headers=HTMX)
    assert changed.status_code == 200
    assert _stored(db, project) == {item: ["billing", "bug"]}
    cleared = client.post(f"{base}/annotations/{first.id + 1}", headers=HTMX)
    assert cleared.status_code == 200
    assert _stored(db, project) == {item: []}
    assert db.scalar(select(func.count()).select_from(Annotation)) == 3


def test_label_text_with_markup_is_shown_as_text(
    app: FastAPI, db: Session, sent: list[Job]
) -> None:
    project = make_project(db, labels=(XSS, "plain"), task_type=TASK_MULTI_LABEL)
    items = make_items(db, project, ["text to label", "a neighbour"])
    _queue(db, project, items[:1],
           [{"label": XSS, "prob": 0.9, "threshold": 0.5, "proposed": True}],
           neighbours=[{"item_id": items[1].id, "label": XSS, "labels": [XSS],
                        "similarity": 0.7}])
    client = _annotator(app, db, project)
    base = f"/projects/{project.id}/annotate"
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    page = client.get(base).text
    assert XSS not in page
    card = page[page.index('class="item-card"'):page.index("</article>")]
    for place in (f'<span class="label-name">{escaped}</span>',  # the toggle
                  f"> {escaped}</label>",  # the checkbox without the script
                  f'<span class="pred-label">{escaped}</span>',
                  f"The model proposes\n  <strong>{escaped}</strong>",
                  f'>{escaped}</span></span>'):  # the neighbour's set
        assert place in card, place
    client.post(f"{base}/items/{_item_id(page)}/label",
                data={"label_ids": str(_ids(db, project)[XSS])}, headers=HTMX)
    page = client.get(base).text
    assert XSS not in page
    recent = page[page.index('id="recent-labels"'):]
    assert f">{escaped}</span></span>" in recent and f"> {escaped}</label>" in recent
