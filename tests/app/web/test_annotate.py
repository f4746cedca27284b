"""The annotator view over HTTP: fragments, labels, skip, undo, submit, escaping and access."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import (
    ROLE_ANNOTATOR,
    ROLE_LEAD,
    RUN_RETRAIN,
    Annotation,
    Project,
    TrainingRun,
)
from app.domain.projects import get_labels
from app.jobs import Job, recording_jobs
from tests.app.domain.annotation_data import add_queue
from tests.factories import UserClient, anonymous_client, login_client, make_items, make_project

HTMX = {"HX-Request": "true"}
XSS = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>"]


@pytest.fixture()
def sent() -> Iterator[list[Job]]:
    with recording_jobs() as jobs:
        yield jobs


@pytest.fixture()
def project(db: Session) -> Project:
    project = make_project(db, labels=("sports", "finance", "science"))
    project.guidelines = "Label the topic.\nWhen unsure, skip."
    make_items(db, project, [f"text number {i}" for i in range(6)])
    return project


def _annotator(app: FastAPI, db: Session, project: Project) -> UserClient:
    return login_client(app, db, role=ROLE_ANNOTATOR, project=project)


def _item_id(response_text: str) -> int:
    marker = 'data-item-id="'
    start = response_text.index(marker) + len(marker)
    return int(response_text[start: response_text.index('"', start)])


def test_page_shows_an_item_label_buttons_with_keys_and_guidelines(
    app: FastAPI, db: Session, project: Project
) -> None:
    client = _annotator(app, db, project)
    page = client.get(f"/projects/{project.id}/annotate")
    assert page.status_code == 200
    assert 'class="item-card"' in page.text
    for key, name in (("1", "sports"), ("2", "finance"), ("3", "science")):
        assert f'data-key="{key}"' in page.text and name in page.text
    assert "When unsure, skip." in page.text
    assert "0 / 6" not in page.text  # batch size is the project's, not the pool's
    assert "/static/js/annotate.js" in page.text


def test_next_fragment_excludes_items_on_screen(app: FastAPI, db: Session,
                                                project: Project) -> None:
    client = _annotator(app, db, project)
    first = _item_id(client.get(f"/projects/{project.id}/annotate").text)
    fragment = client.get(f"/projects/{project.id}/annotate/next?exclude={first}", headers=HTMX)
    assert fragment.status_code == 200
    assert "<html" not in fragment.text
    second = int(fragment.headers["X-Item-Id"])
    assert second != first and _item_id(fragment.text) == second
    bad = client.get(f"/projects/{project.id}/annotate/next?exclude=1;2", headers=HTMX)
    assert bad.status_code == 422


def test_two_annotators_never_receive_the_same_item(app: FastAPI, db: Session,
                                                    project: Project) -> None:
    alice, bob = _annotator(app, db, project), _annotator(app, db, project)
    base = f"/projects/{project.id}/annotate"
    shown: dict[str, list[int]] = {"alice": [], "bob": []}
    for _ in range(3):
        for name, client in (("alice", alice), ("bob", bob)):
            exclude = ",".join(map(str, shown[name]))
            response = client.get(f"{base}/next?exclude={exclude}", headers=HTMX)
            shown[name].append(int(response.headers["X-Item-Id"]))
    assert not set(shown["alice"]) & set(shown["bob"])
    assert len(set(shown["alice"]) | set(shown["bob"])) == 6
    done = alice.get(f"{base}/next?exclude={','.join(map(str, shown['alice']))}", headers=HTMX)
    assert "X-Item-Id" not in done.headers and "Nothing left to label" in done.text


def test_label_over_htmx_answers_progress_and_is_idempotent(
    app: FastAPI, db: Session, project: Project, sent: list[Job]
) -> None:
    client = _annotator(app, db, project)
    item = _item_id(client.get(f"/projects/{project.id}/annotate").text)
    label = get_labels(db, project.id)[2]
    form = {"label_id": str(label.id), "duration_ms": "1500", "key": "abc-1"}
    url = f"/projects/{project.id}/annotate/items/{item}/label"
    for _ in range(2):
        response = client.post(url, data=form, headers=HTMX)
        assert response.status_code == 200
        assert 'id="batch-progress"' in response.text and 'id="recent-labels"' in response.text
    stored = db.scalars(select(Annotation).where(Annotation.item_id == item)).all()
    assert len(stored) == 1 and stored[0].label_id == label.id and stored[0].duration_ms == 1500
    assert ">1 / " in response.text


def test_plain_form_post_redirects_back_to_the_page(
    app: FastAPI, db: Session, project: Project, sent: list[Job]
) -> None:
    client = _annotator(app, db, project)
    item = _item_id(client.get(f"/projects/{project.id}/annotate").text)
    label = get_labels(db, project.id)[0]
    response = client.post(f"/projects/{project.id}/annotate/items/{item}/label",
                           data={"label_id": str(label.id)}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == f"/projects/{project.id}/annotate"


def test_label_without_csrf_token_is_refused(app: FastAPI, db: Session,
                                             project: Project) -> None:
    client = _annotator(app, db, project)
    item = _item_id(client.get(f"/projects/{project.id}/annotate").text)
    del client.headers["X-CSRF-Token"]
    response = client.post(f"/projects/{project.id}/annotate/items/{item}/label",
                           data={"label_id": "1"}, headers=HTMX)
    assert response.status_code == 403
    assert db.scalar(select(func.count()).select_from(Annotation)) == 0


def test_skip_then_undo_over_http(app: FastAPI, db: Session, project: Project,
                                  sent: list[Job]) -> None:
    client = _annotator(app, db, project)
    base = f"/projects/{project.id}/annotate"
    first = _item_id(client.get(base).text)
    assert client.post(f"{base}/items/{first}/skip", headers=HTMX).status_code == 200
    second = _item_id(client.get(f"{base}/next", headers=HTMX).text)
    assert second != first
    label = get_labels(db, project.id)[1]
    client.post(f"{base}/items/{second}/label", data={"label_id": str(label.id)}, headers=HTMX)
    undone = client.post(f"{base}/undo", headers=HTMX)
    assert undone.status_code == 200 and _item_id(undone.text) == second
    assert "You had chosen" in undone.text and "finance" in undone.text
    # the undone label leaves the recent list and the batch count in the same answer
    assert 'id="recent-labels"' in undone.text and f"Item #{second}:" not in undone.text
    assert 'class="batch-count">0 / ' in undone.text
    # it says why the item is back, not that it was a random pick
    assert "back after undo" in undone.text and "random pick" not in undone.text
    assert "Back because you undid your label on it." in undone.text
    nothing = client.post(f"{base}/undo", headers=HTMX)
    assert nothing.status_code == 409 and "toast" in nothing.headers["HX-Trigger"]


def test_full_batch_submits_itself_and_requests_a_retrain(
    app: FastAPI, db: Session, project: Project, sent: list[Job]
) -> None:
    project.batch_size = 2
    client = _annotator(app, db, project)
    base = f"/projects/{project.id}/annotate"
    label = get_labels(db, project.id)[0]
    shown = [_item_id(client.get(base).text)]
    responses = []
    for _ in range(2):
        item = shown[-1]
        responses.append(client.post(f"{base}/items/{item}/label",
                                     data={"label_id": str(label.id)}, headers=HTMX))
        shown.append(_item_id(client.get(f"{base}/next", headers=HTMX).text))
    assert "HX-Trigger" not in responses[0].headers
    assert "retraining" in responses[1].headers["HX-Trigger"]
    run = db.scalars(select(TrainingRun)).one()
    assert run.kind == RUN_RETRAIN and run.requested_by_id == client.user.id


def test_manual_submit_button(app: FastAPI, db: Session, project: Project,
                              sent: list[Job]) -> None:
    client = _annotator(app, db, project)
    base = f"/projects/{project.id}/annotate"
    assert client.post(f"{base}/submit", headers=HTMX).status_code == 409  # nothing labelled
    item = _item_id(client.get(base).text)
    client.post(f"{base}/items/{item}/label",
                data={"label_id": str(get_labels(db, project.id)[0].id)}, headers=HTMX)
    response = client.post(f"{base}/submit", headers=HTMX)
    assert response.status_code == 200 and "retraining" in response.headers["HX-Trigger"]
    assert db.scalar(select(func.count()).select_from(TrainingRun)) == 1


def test_item_text_is_escaped_everywhere_it_appears(app: FastAPI, db: Session) -> None:
    project = make_project(db, labels=("a", "b"))
    hostile = make_items(db, project, [f"before {XSS[0]} middle {XSS[1]} after"])
    neighbour = make_items(db, project, [f"neighbour {XSS[1]}"])
    add_queue(db, project, hostile, neighbours=neighbour)
    client = _annotator(app, db, project)
    page = client.get(f"/projects/{project.id}/annotate").text
    for raw in XSS:
        assert raw not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "neighbour &lt;img" in page


def test_status_poll_announces_a_fresh_queue(app: FastAPI, db: Session,
                                             project: Project) -> None:
    client = _annotator(app, db, project)
    base = f"/projects/{project.id}/annotate"
    quiet = client.get(f"{base}/status?v=0", headers=HTMX)
    assert quiet.status_code == 200 and "Fresh queue" not in quiet.text
    add_queue(db, project, make_items(db, project, ["queued item"]))
    fresh = client.get(f"{base}/status?v=0", headers=HTMX)
    assert "Fresh queue (v1)" in fresh.text
    assert "Fresh queue" not in client.get(f"{base}/status?v=1", headers=HTMX).text


def test_edit_a_recent_label(app: FastAPI, db: Session, project: Project,
                             sent: list[Job]) -> None:
    client = _annotator(app, db, project)
    base = f"/projects/{project.id}/annotate"
    labels = get_labels(db, project.id)
    item = _item_id(client.get(base).text)
    client.post(f"{base}/items/{item}/label", data={"label_id": str(labels[0].id)},
                headers=HTMX)
    first = db.scalars(select(Annotation)).one()
    response = client.post(f"{base}/annotations/{first.id}",
                           data={"label_id": str(labels[2].id)}, headers=HTMX)
    assert response.status_code == 200
    live = db.scalars(select(Annotation).where(Annotation.superseded_by_id.is_(None))).one()
    assert live.label_id == labels[2].id and first.superseded_by_id == live.id


def test_release_gives_back_prefetched_items(app: FastAPI, db: Session,
                                             project: Project) -> None:
    client = _annotator(app, db, project)
    other = _annotator(app, db, project)
    base = f"/projects/{project.id}/annotate"
    held = [_item_id(client.get(base).text)]
    held.append(_item_id(client.get(f"{base}/next?exclude={held[0]}", headers=HTMX).text))
    response = client.post(f"{base}/release", data={"item_ids": str(held[1])})
    assert response.status_code == 204
    seen = {_item_id(other.get(base).text)}
    for _ in range(4):
        exclude = ",".join(map(str, seen))
        seen.add(_item_id(other.get(f"{base}/next?exclude={exclude}", headers=HTMX).text))
    assert held[1] in seen and held[0] not in seen


def test_release_names_its_own_field_in_errors(app: FastAPI, db: Session,
                                               project: Project) -> None:
    client = _annotator(app, db, project)
    response = client.post(f"/projects/{project.id}/annotate/release",
                           data={"item_ids": "12,abc"})
    assert response.status_code == 422
    assert "&#39;item_ids&#39; takes item ids" in response.text
    assert "exclude" not in response.text


def test_strangers_and_anonymous_visitors_cannot_annotate(
    app: FastAPI, db: Session, project: Project
) -> None:
    stranger = login_client(app, db, role=ROLE_LEAD)
    assert stranger.get(f"/projects/{project.id}/annotate").status_code == 404
    anonymous = anonymous_client(app).get(f"/projects/{project.id}/annotate",
                                          follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")


def test_enter_accepts_the_models_guess_and_is_listed_in_the_keys(
    app: FastAPI, db: Session, project: Project
) -> None:
    items = make_items(db, project, ["queued text"])
    add_queue(db, project, items)
    labels = {label.name: label for label in get_labels(db, project.id)}
    client = _annotator(app, db, project)
    page = client.get(f"/projects/{project.id}/annotate").text
    top = project_top_guess(db, project)
    assert f'data-guess-label-id="{labels[top].id}"' in page
    assert f"Accept guess: {top}" in page and 'aria-keyshortcuts="Enter"' in page
    help_dialog = page[page.index('id="help-dialog"'):]
    assert "<kbd>Enter</kbd></td><td>Accept the model's guess" in help_dialog


def project_top_guess(db: Session, project: Project) -> str:
    from app.db.models import QueueEntry

    entry = db.scalars(select(QueueEntry).where(QueueEntry.project_id == project.id)).first()
    assert entry is not None
    return str(max(entry.predicted, key=lambda p: p["prob"])["label"])


def test_recent_labels_keep_enough_text_to_find_the_item(
    app: FastAPI, db: Session, project: Project, sent: list[Job]
) -> None:
    long_text = "Refund request for the annual plan " + "with many details " * 20 + "END"
    item = make_items(db, project, [long_text])[0]
    label = get_labels(db, project.id)[0]
    client = _annotator(app, db, project)
    client.post(f"/projects/{project.id}/annotate/items/{item.id}/label",
                data={"label_id": str(label.id)}, headers=HTMX)
    page = client.get(f"/projects/{project.id}/annotate").text
    recent = page[page.index('id="recent-labels"'):]
    shown = recent[recent.index('class="recent-text"'):]
    assert 'tabindex="0"' in shown[:60]
    assert "with many details " * 10 in shown and "END" in shown
