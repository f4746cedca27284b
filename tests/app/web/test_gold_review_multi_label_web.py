"""The gold, review and data pages of a multi-label project: answers are sets ticked as
checkboxes (the annotate page's fallback pattern), hostile label names and texts stay escaped,
and each form posts a set the domain stores."""

from __future__ import annotations

import re
from html import unescape

from fastapi import FastAPI
from markupsafe import escape
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import ROLE_ANNOTATOR, ROLE_LEAD, TASK_MULTI_LABEL, Annotation, Project, User
from app.domain import gold, review
from app.domain.annotation import record_label
from app.domain.annotation.label_sets import label_sets
from app.domain.projects import get_labels
from tests.factories import login_client, make_items, make_project, make_user

HOSTILE = "<script>alert('x')</script>"
LABELS = ("billing", "bug", HOSTILE)


def _world(db: Session) -> tuple[Project, User, dict[str, int]]:
    ana = make_user(db, role=ROLE_ANNOTATOR, name="Ana")
    project = make_project(db, labels=LABELS, annotators=[ana], task_type=TASK_MULTI_LABEL)
    return project, ana, {label.name: label.id for label in get_labels(db, project.id)}


def test_the_gold_page_marks_a_set_and_shows_exact_and_jaccard_scores(
    app: FastAPI, db: Session
) -> None:
    project, ana, ids = _world(db)
    first, second = make_items(db, project, ["<i>first</i>", "second"])
    lead = login_client(app, db, role=ROLE_LEAD, project=project)
    page = lead.get(f"/projects/{project.id}/gold").text
    assert 'type="checkbox" name="label_ids"' in page and '<select name="label"' not in page
    assert HOSTILE not in page and str(escape(HOSTILE)) in page
    posted = lead.post(f"/projects/{project.id}/gold", data={
        "item_id": str(first.id), "label_ids": [str(ids["bug"]), str(ids[HOSTILE])]},
        follow_redirects=False)
    assert posted.status_code == 303
    assert gold.gold_set_of_item(db, project, first.id) == [ids["bug"], ids[HOSTILE]]
    lead.post(f"/projects/{project.id}/gold", data={"item_id": str(second.id)})
    assert gold.gold_set_of_item(db, project, second.id) == []  # none ticked: none of these
    record_label(db, project, ana, item_id=first.id, label_ids=[ids["bug"]])
    page = lead.get(f"/projects/{project.id}/gold").text
    assert "Mean Jaccard" in page and "0.50" in page and "none of these" in page
    assert HOSTILE not in page and "<i>first</i>" not in page
    dashboard = lead.get(f"/projects/{project.id}/dashboard").text
    assert 'data-mean-jaccard>0.50<' in dashboard
    refused = lead.post(f"/projects/{project.id}/gold",
                        data={"item_id": str(first.id), "label_ids": ["999999"]},
                        follow_redirects=True)
    assert "is not a label of this project" in refused.text
    assert gold.gold_set_of_item(db, project, first.id) == [ids["bug"], ids[HOSTILE]]


def test_the_review_page_changes_a_set_with_checkboxes(app: FastAPI, db: Session) -> None:
    project, ana, ids = _world(db)
    ben = make_user(db, role=ROLE_ANNOTATOR, name="Ben")
    (item,) = make_items(db, project, ["ticket"])
    record_label(db, project, ana, item_id=item.id, label_ids=[ids["billing"]])
    record_label(db, project, ben, item_id=item.id, label_ids=[ids["bug"]])
    lead = login_client(app, db, role=ROLE_LEAD, project=project)
    html = lead.get(f"/projects/{project.id}/review").text
    boxes = dict(re.findall(r'name="label_ids" value="(\d+)"[^>]*?( checked)?>', html))
    assert boxes[str(ids["bug"])] == " checked"  # the majority set now
    assert boxes[str(ids["billing"])] == ""
    assert f'value="{ids["bug"]}" data-key="2" checked' in html  # its key ticks it after c
    assert HOSTILE not in html
    posted = lead.post(f"/projects/{project.id}/review/items/{item.id}", data={
        "action": "change", "reason": "disagreement",
        "label_ids": [str(ids["billing"]), str(ids[HOSTILE])]}, follow_redirects=True)
    assert posted.status_code == 200
    assert f"relabelled as billing, {escape(HOSTILE)}" in posted.text
    assert review.adjudicated_sets(db, project.id) == {item.id: [ids["billing"], ids[HOSTILE]]}


def test_the_data_page_relabels_with_a_set_and_exports_with_a_separator(
    app: FastAPI, db: Session
) -> None:
    project, ana, ids = _world(db)
    (item,) = make_items(db, project, ["ticket"])
    record_label(db, project, ana, item_id=item.id, label_ids=[ids["billing"]])
    lead = login_client(app, db, role=ROLE_LEAD, project=project)
    page = lead.get(f"/projects/{project.id}/data").text
    assert 'name="new_label_ids"' in page and 'name="label_separator"' in page
    posted = lead.post(f"/projects/{project.id}/data/bulk", data={
        "action": "relabel", "item_ids": [str(item.id)], "new_label_ids": [str(ids["bug"])]},
        follow_redirects=False)
    assert posted.status_code == 303
    live = db.scalars(select(Annotation.id).where(
        Annotation.item_id == item.id, Annotation.deleted.is_(False),
        Annotation.superseded_by_id.is_(None))).all()
    assert list(label_sets(db, live).values()) == [[ids["bug"]]]
    exported = lead.get(f"/projects/{project.id}/data/export",
                        params={"format": "csv", "label_separator": ";"})
    assert exported.status_code == 200 and ",bug," in exported.text


def test_the_data_pages_csv_link_uses_a_separator_no_label_name_contains(
    app: FastAPI, db: Session
) -> None:
    project = make_project(db, labels=("billing", "a|b"), task_type=TASK_MULTI_LABEL)
    ids = {label.name: label.id for label in get_labels(db, project.id)}
    ana = make_user(db, role=ROLE_ANNOTATOR)
    (item,) = make_items(db, project, ["ticket"])
    record_label(db, project, ana, item_id=item.id, label_ids=[ids["billing"], ids["a|b"]])
    lead = login_client(app, db, role=ROLE_LEAD, project=project)
    page = lead.get(f"/projects/{project.id}/data").text
    link = re.search(r'href="(/projects/\d+/data/export\?format=csv[^"]*)"', page)
    assert link is not None and "label_separator=%3B" in link.group(1)
    assert 'name="label_separator" value=";"' in page and "joined with “;”" in page
    exported = lead.get(unescape(link.group(1)))  # what the CSV button downloads
    assert exported.status_code == 200 and "billing;a|b" in exported.text
    assert lead.get(f"/projects/{project.id}/data/export?format=csv").status_code == 422
