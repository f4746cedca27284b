"""The data manager over the API and the web pages: browse, access, bulk actions, every export
format re-imported through the normal import to the same labels."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import (
    ROLE_ADMIN,
    ROLE_ANNOTATOR,
    ROLE_LEAD,
    TASK_MULTI_LABEL,
    TASK_SINGLE_LABEL,
    Annotation,
    Item,
    Label,
    Project,
    User,
)
from app.domain import data_manager as dm
from app.domain.annotation import labels as ann
from tests.app.api.support import Caller, caller, lead_with_project
from tests.factories import add_member, login_client, make_items, make_project, make_user

pytestmark = pytest.mark.db
TEXTS = [
    "Shares rallied on the stock market",
    "The striker scored twice in the final",
    "=HYPERLINK(\"http://evil\") looks like a formula",
    "Bond yields fell as the market cooled",
    "An unlabelled note about the weather",
]


def _annotate(db: Session, project: Project, item: Item, user: User, name: str) -> None:
    label_id = db.scalar(select(Label.id).where(Label.project_id == project.id,
                                                Label.name == name))
    db.add(Annotation(project_id=project.id, item_id=item.id, annotator_id=user.id,
                      label_id=label_id))
    db.flush()


def _setup(app: FastAPI, db: Session) -> tuple[Caller, Project, list[Item]]:
    lead, project = lead_with_project(app, db)
    items = make_items(db, project, TEXTS)
    _annotate(db, project, items[0], lead.user, "positive")
    _annotate(db, project, items[1], lead.user, "negative")
    _annotate(db, project, items[2], lead.user, "negative")
    _annotate(db, project, items[3], lead.user, "positive")
    items[3].split = "dev"
    db.commit()
    return lead, project, items


def _live_labels(db: Session, project_id: int) -> dict[str, str]:
    rows = db.execute(
        select(Item.text, Label.name)
        .join(Annotation, Annotation.item_id == Item.id)
        .join(Label, Label.id == Annotation.label_id)
        .where(Item.project_id == project_id, Annotation.deleted.is_(False),
               Annotation.superseded_by_id.is_(None))
    )
    return {text: label for text, label in rows}


def test_browse_pages_with_a_cursor_and_filters(app: FastAPI, db: Session) -> None:
    lead, project, items = _setup(app, db)
    url = f"/api/v1/projects/{project.id}/data/items"
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, "count": "true"}
        if cursor:
            params["cursor"] = cursor
        body = lead.get(url, params=params).json()
        assert body["total"] == 5
        seen += [row["id"] for row in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [item.id for item in items]
    market = lead.get(url, params={"q": "market", "labelled": "yes"}).json()["items"]
    assert [r["id"] for r in market] == [items[0].id, items[3].id]
    assert market[0]["label"] == "positive"
    assert market[0]["votes"][0]["annotator_id"] == lead.user.id
    bad = lead.get(url, params={"labeled": "yes"})  # misspelt: refused, not ignored
    assert bad.status_code == 422


def test_access_leads_only_annotators_and_strangers_cannot(
    app: FastAPI, db: Session
) -> None:
    lead, project, items = _setup(app, db)
    annotator = make_user(db, role=ROLE_ANNOTATOR)
    add_member(db, project, annotator)
    reader = caller(app, db, user=lead.user, scopes=("read",))
    member = caller(app, db, user=annotator)
    stranger = caller(app, db, role=ROLE_LEAD)
    base = f"/api/v1/projects/{project.id}/data"
    assert lead.get(f"{base}/items").status_code == 200
    assert lead.get(f"{base}/export", params={"format": "csv"}).status_code == 200
    assert lead.get(f"{base}/items/{items[0].id}").status_code == 200
    bulk = {"action": "exclude", "item_ids": [items[0].id]}
    # A read-scope token caps even a lead below the lead level: no labels, no bulk actions.
    assert reader.get(f"{base}/items").status_code == 403
    assert reader.post(f"{base}/bulk", json=bulk).status_code == 403
    for path in ("/items", f"/items/{items[0].id}", "/export"):
        assert member.get(base + path).status_code == 403
        assert stranger.get(base + path).status_code == 404
    assert member.post(f"{base}/bulk", json=bulk).status_code == 403
    assert stranger.post(f"{base}/bulk", json=bulk).status_code == 404
    other = make_project(db, lead=lead.user)
    foreign = make_items(db, other, ["elsewhere"])[0]
    db.commit()
    assert lead.get(f"{base}/items/{foreign.id}").status_code == 404
    refused = lead.post(f"{base}/bulk", json={"action": "exclude", "item_ids": [foreign.id]})
    assert refused.status_code == 404
    db.refresh(foreign)
    assert not foreign.excluded


def test_bulk_relabel_on_a_filter_and_confirmed_delete(
    app: FastAPI, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    lead, project, items = _setup(app, db)
    base = f"/api/v1/projects/{project.id}/data"
    done = lead.post(f"{base}/bulk", json={
        "action": "relabel", "label": "negative", "filters": {"q": "market"},
    })
    assert done.status_code == 200, done.text
    assert done.json()["items"] == 2 and done.json()["annotations_superseded"] == 2
    labels = _live_labels(db, project.id)
    assert labels[TEXTS[0]] == labels[TEXTS[3]] == "negative"
    detail = lead.get(f"{base}/items/{items[0].id}").json()
    assert [a["status"] for a in detail["annotations"]] == ["superseded", "live"]
    assert detail["events"][0]["action"] == "relabel"
    delete = {"action": "delete", "filters": {"split": "pool"}}
    refused = lead.post(f"{base}/bulk", json=delete)
    assert refused.status_code == 409
    assert refused.json()["error"]["details"]["annotations"] == 4  # superseded ones too
    counted = lead.get(f"{base}/items", params={"count": "true"}).json()
    assert (counted["total"], counted["total_capped"]) == (5, False)
    monkeypatch.setattr(dm, "COUNT_CAP", 3)
    counted = lead.get(f"{base}/items", params={"count": "true"}).json()
    assert (counted["total"], counted["total_capped"]) == (3, True)  # "3+": counting stopped
    counted = lead.get(f"{base}/items", params={"count": "true", "exact": "true"}).json()
    assert (counted["total"], counted["total_capped"]) == (5, False)
    confirmed = lead.post(f"{base}/bulk", json={**delete, "confirm": True})
    assert confirmed.status_code == 200 and confirmed.json()["items"] == 4
    assert [r["id"] for r in lead.get(f"{base}/items").json()["items"]] == [items[3].id]


def _reimport(app: FastAPI, db: Session, fmt: str, content: bytes) -> dict[str, str]:
    """Import an export into a fresh project through the normal import; its labels by text."""
    lead, project = lead_with_project(app, db)
    if fmt in ("csv", "jsonl"):
        response = lead.post(
            f"/api/v1/projects/{project.id}/items",
            files={"file": (f"export.{fmt}", content)},
            data={"label_column": "label", "split_column": "split", "format": fmt},
        )
    else:
        kind = "label-studio" if fmt == "label_studio" else "prodigy"
        response = lead.post(f"/api/v1/projects/{project.id}/imports/{kind}",
                             files={"file": ("export", content)})
    assert response.status_code == 201, response.text
    return _live_labels(db, project.id)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "label_studio", "prodigy"])
def test_each_export_reimports_to_the_same_labels(app: FastAPI, db: Session, fmt: str) -> None:
    lead, project, _items = _setup(app, db)
    url = f"/api/v1/projects/{project.id}/data/export"
    response = lead.get(url, params={"format": fmt, "labelled": "yes"})
    assert response.status_code == 200
    assert "attachment" in response.headers["content-disposition"]
    expected = _live_labels(db, project.id)
    reimported = _reimport(app, db, fmt, response.content)
    if fmt == "csv":  # spreadsheet-safe: the formula-like text comes back quoted
        quoted = "'" + TEXTS[2]
        assert reimported.pop(quoted) == expected.pop(TEXTS[2])
    assert reimported == expected


def test_exports_carry_annotations_flags_and_splits(app: FastAPI, db: Session) -> None:
    lead, project, items = _setup(app, db)
    lead.post(f"/api/v1/projects/{project.id}/data/bulk",
              json={"action": "exclude", "item_ids": [items[1].id]})
    url = f"/api/v1/projects/{project.id}/data/export"
    jsonl = lead.get(url, params={"format": "jsonl"}).text
    rows = [json.loads(line) for line in jsonl.splitlines()]
    assert [r["item_id"] for r in rows] == [item.id for item in items]
    assert rows[1]["excluded"] is True and rows[3]["split"] == "dev"
    assert rows[0]["annotations"][0]["annotator"] == lead.user.email
    assert rows[4]["label"] is None and rows[4]["annotations"] == []
    table = list(csv.DictReader(io.StringIO(lead.get(url, params={"format": "csv"}).text)))
    assert table[2]["text"].startswith("'=")
    assert table[1]["excluded"] == "yes"
    assert json.loads(table[0]["annotations"])[0]["label"] == "positive"
    tasks = json.loads(lead.get(url, params={"format": "label_studio"}).text)
    assert tasks[0]["annotations"][0]["ground_truth"] is True
    assert tasks[4]["annotations"] == []


@pytest.mark.parametrize(("task_type", "labels", "votes", "decided"), [
    (TASK_SINGLE_LABEL, ("yes", "no", "maybe"), (["yes"], ["no"]), ["maybe"]),
    (TASK_MULTI_LABEL, ("bug", "feature", "urgent"), (["bug"], ["feature"]), ["bug", "urgent"]),
])
def test_label_studio_export_reimports_to_the_reviewed_label(
    app: FastAPI, db: Session, task_type: str, labels: tuple[str, ...],
    votes: tuple[list[str], list[str]], decided: list[str],
) -> None:
    """A reviewer's change is no annotation: the export still carries it as the ground truth
    (found by an HTTP walk: the re-import took the last annotation instead)."""
    lead_user = make_user(db, role=ROLE_LEAD)
    project = make_project(db, lead=lead_user, labels=labels, task_type=task_type)
    multi = task_type == TASK_MULTI_LABEL
    ids = {label.name: label.id for label in db.scalars(
        select(Label).where(Label.project_id == project.id))}
    (item,) = make_items(db, project, ["the reviewed item"])
    for user, names in zip((lead_user, make_user(db, role=ROLE_ADMIN)), votes, strict=True):
        answer = {"label_ids": [ids[n] for n in names]} if multi else {"label_id": ids[names[0]]}
        ann.record_label(db, project, user, item_id=item.id, **answer)  # type: ignore[arg-type]
    lead = caller(app, db, user=lead_user)
    change = ({"label_ids": [ids[n] for n in decided]} if multi
              else {"label_id": ids[decided[0]]})
    reviewed = lead.post(f"/api/v1/projects/{project.id}/review/items/{item.id}",
                         json={"action": "change", **change})
    assert reviewed.status_code == 200, reviewed.text
    export = lead.get(f"/api/v1/projects/{project.id}/data/export",
                      params={"format": "label_studio", "labelled": "yes"})
    (task,) = json.loads(export.content)
    truth = [a for a in task["annotations"] if a["ground_truth"]]
    assert len(truth) == 1 and truth[0]["result"][0]["value"]["choices"] == decided
    assert truth[0]["meta"]["source"] == "review"
    target = make_project(db, lead=lead_user, labels=labels, task_type=task_type)
    db.commit()
    imported = lead.post(f"/api/v1/projects/{target.id}/imports/label-studio",
                         files={"file": ("export.json", export.content)})
    assert imported.status_code == 201, imported.text
    rows = lead.get(f"/api/v1/projects/{target.id}/data/export", params={"format": "jsonl"})
    (row,) = [json.loads(line) for line in rows.text.splitlines()]
    assert row["label"] == (decided if multi else decided[0])


def test_hugging_face_folder_layout_parses_and_loads(app: FastAPI, db: Session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lead, project, items = _setup(app, db)
    response = lead.get(f"/api/v1/projects/{project.id}/data/export", params={"format": "hf"})
    assert response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        archive.extractall(tmp_path)
    root = tmp_path / f"tapestry-project{project.id}"
    card = (root / "README.md").read_text()
    assert card.startswith("---\nconfigs:\n")
    assert "path: data/train.jsonl" in card and "path: data/validation.jsonl" in card
    assert "data/test.jsonl" not in card  # no test items: no empty split declared
    train = [json.loads(x) for x in (root / "data/train.jsonl").read_text().splitlines()]
    validation = [json.loads(x) for x in (root / "data/validation.jsonl").read_text().splitlines()]
    assert [r["item_id"] for r in train] == [items[i].id for i in (0, 1, 2, 4)]
    assert [r["label"] for r in validation] == ["positive"]
    try:
        import datasets  # type: ignore[import-not-found]
    except ImportError:
        return  # not installed here: the layout and the JSONL were checked above
    loaded = datasets.load_dataset(str(root))
    assert loaded["train"].num_rows == 4 and loaded["validation"]["label"] == ["positive"]


# --------------------------------------------------------------------------- web pages


def test_web_pages_for_leads_only(
    app: FastAPI, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    lead_user = make_user(db, role=ROLE_LEAD)
    project = make_project(db, lead=lead_user)
    items = make_items(db, project, ["<b>bold</b> market text", "another text"])
    annotator = make_user(db, role=ROLE_ANNOTATOR)
    add_member(db, project, annotator)
    stranger = make_user(db, role=ROLE_LEAD)
    db.commit()
    lead = login_client(app, user=lead_user)
    page = lead.get(f"/projects/{project.id}/data")
    assert page.status_code == 200
    assert "&lt;b&gt;bold&lt;/b&gt;" in page.text and "<b>bold</b>" not in page.text
    assert 'id="match-count">2<' in page.text
    partial = lead.get(f"/projects/{project.id}/data", params={"q": "market"},
                       headers={"HX-Request": "true", "HX-Target": "data-results"})
    assert partial.text.lstrip().startswith('<section id="data-results">')
    assert 'id="match-count">1<' in partial.text and "another text" not in partial.text
    monkeypatch.setattr(dm, "COUNT_CAP", 1)
    assert 'id="match-count">1+<' in lead.get(f"/projects/{project.id}/data").text
    item_page = lead.get(f"/projects/{project.id}/data/items/{items[0].id}")
    assert item_page.status_code == 200
    for path in ("", f"/items/{items[0].id}", "/export", "/rows"):
        url = f"/projects/{project.id}/data{path}"
        assert login_client(app, user=annotator).get(url).status_code == 403
        assert login_client(app, user=stranger).get(url).status_code == 404


def test_web_bulk_form_and_delete_confirmation(app: FastAPI, db: Session) -> None:
    lead_user = make_user(db, role=ROLE_LEAD)
    project = make_project(db, lead=lead_user)
    items = make_items(db, project, ["market one", "market two", "weather"])
    _annotate(db, project, items[0], lead_user, "positive")
    db.commit()
    lead = login_client(app, user=lead_user)
    url = f"/projects/{project.id}/data/bulk"
    moved = lead.post(url, data={"action": "move", "new_split": "test", "q": "market",
                                 "all_matching": "yes"}, follow_redirects=False)
    assert moved.status_code == 303 and moved.headers["location"].endswith("?q=market")
    db.expire_all()
    assert [db.get(Item, i.id).split for i in items] == ["test", "test", "pool"]  # type: ignore[union-attr]
    confirm = lead.post(url, data={"action": "delete", "item_ids": [str(items[0].id)]})
    assert confirm.status_code == 409 and "1 annotation(s)" in confirm.text
    assert 'name="confirm" value="yes"' in confirm.text
    first = items[0].id
    deleted = lead.post(url, data={"action": "delete", "item_ids": [str(first)],
                                   "confirm": "yes"}, follow_redirects=False)
    assert deleted.status_code == 303
    db.expire_all()
    assert db.scalar(select(Item.id).where(Item.id == first)) is None
