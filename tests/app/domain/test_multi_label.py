"""Multi-label projects: the task type, label sets on annotations, and the features that refuse
them until they support sets. Single-label behaviour is covered by the rest of the suite."""

from __future__ import annotations

from dataclasses import replace

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import (
    ROLE_ANNOTATOR,
    ROLE_LEAD,
    TASK_MULTI_LABEL,
    Annotation,
    AnnotationLabel,
    Label,
    Project,
)
from app.domain import agreement, gold, review
from app.domain import projects as project_service
from app.domain.annotation import labels as ann
from app.domain.annotation.label_sets import label_sets
from app.domain.annotation.overlap import due
from app.errors import Conflict, InvalidInput, NotSupported
from tests.factories import make_items, make_project, make_token, make_user

LABELS = ("billing", "bug", "feature")


@pytest.fixture()
def project(db: Session) -> Project:
    return make_project(db, labels=LABELS, task_type=TASK_MULTI_LABEL)


def _ids(db: Session, project: Project) -> dict[str, int]:
    return dict(db.execute(select(Label.name, Label.id)
                           .where(Label.project_id == project.id)).tuples().all())


def _settings(db: Session, project: Project, **changes: object
              ) -> project_service.ProjectSettings:
    current = project_service.ProjectSettings(
        name=project.name, labels=LABELS, task_type=project.task_type)
    return replace(current, **changes)  # type: ignore[arg-type]


def test_a_multi_label_project_stores_its_task_and_overlaps_like_any_project(
    db: Session, project: Project
) -> None:
    assert project.task_type == TASK_MULTI_LABEL
    single = make_project(db, labels=LABELS)
    assert single.task_type == "single_label"
    # Agreement on label sets is measured (alpha-MASI): the same overlap default as one label.
    assert project.overlap_rate == single.overlap_rate == pytest.approx(0.1)
    agreement.update_overlap_settings(project, rate=1.0)
    assert due(db, project)  # the next item handed out becomes an overlap item
    agreement.update_overlap_settings(project, rate=0.0)
    assert not due(db, project)


def test_a_set_is_stored_in_label_order_and_an_empty_set_means_none(
    db: Session, project: Project
) -> None:
    ids = _ids(db, project)
    user = make_user(db)
    first, second = make_items(db, project, ["charged twice and the app crashes", "hello"])
    result = ann.record_label(db, project, user, item_id=first.id,
                              label_ids=[ids["bug"], ids["billing"], ids["bug"]])
    assert result.annotation.label_id is None
    assert label_sets(db, [result.annotation.id]) == {
        result.annotation.id: [ids["billing"], ids["bug"]]}
    none = ann.record_label(db, project, user, item_id=second.id, label_ids=[])
    assert label_sets(db, [none.annotation.id]) == {none.annotation.id: []}
    counts = project_service.project_counts(db, project.id)
    assert counts.per_label == {"billing": 1, "bug": 1, "feature": 0}
    assert counts.labelled_items == 2
    recent = ann.recent_labels(db, project, user)
    assert [r.label_ids for r in recent] == [[], [ids["billing"], ids["bug"]]]


def test_labelling_again_supersedes_the_set_and_edit_changes_it(
    db: Session, project: Project
) -> None:
    ids = _ids(db, project)
    user = make_user(db)
    (item,) = make_items(db, project, ["slow export"])
    first = ann.record_label(db, project, user, item_id=item.id, label_ids=[ids["bug"]])
    second = ann.record_label(db, project, user, item_id=item.id,
                              label_ids=[ids["bug"], ids["feature"]])
    db.refresh(first.annotation)
    assert first.annotation.superseded_by_id == second.annotation.id
    same = ann.edit_annotation(db, project, user, annotation_id=second.annotation.id,
                               label_ids=[ids["feature"], ids["bug"]])
    assert same.id == second.annotation.id, "the same set is no change"
    edited = ann.edit_annotation(db, project, user, annotation_id=second.annotation.id,
                                 label_ids=[ids["billing"]])
    assert label_sets(db, [edited.id]) == {edited.id: [ids["billing"]]}
    live = db.scalars(select(Annotation).where(Annotation.item_id == item.id,
                                               Annotation.superseded_by_id.is_(None))).all()
    assert [a.id for a in live] == [edited.id]


def test_the_answer_must_match_the_task(db: Session, project: Project) -> None:
    ids = _ids(db, project)
    user = make_user(db)
    (item,) = make_items(db, project, ["x"])
    with pytest.raises(InvalidInput, match="multi-label: send label_ids"):
        ann.record_label(db, project, user, item_id=item.id, label_id=ids["bug"])
    single = make_project(db, labels=LABELS)
    (other,) = make_items(db, single, ["y"])
    with pytest.raises(InvalidInput, match="single-label: send one label_id"):
        ann.record_label(db, single, user, item_id=other.id, label_ids=[])
    foreign = _ids(db, single)["bug"]
    with pytest.raises(InvalidInput, match="not one of this project's labels"):
        ann.record_label(db, project, user, item_id=item.id, label_ids=[ids["bug"], foreign])
    assert db.scalar(select(func.count()).select_from(AnnotationLabel)) == 0


def test_the_task_type_is_fixed_once_labels_exist(db: Session, project: Project) -> None:
    project_service.update_project(db, project, _settings(db, project, task_type="single_label"))
    assert project.task_type == "single_label"
    project_service.update_project(db, project, _settings(db, project, task_type=TASK_MULTI_LABEL))
    (item,) = make_items(db, project, ["x"])
    ann.record_label(db, project, make_user(db), item_id=item.id, label_ids=[])
    with pytest.raises(Conflict, match="cannot change once the project has labels"):
        project_service.update_project(db, project,
                                       _settings(db, project, task_type="single_label"))
    assert project.task_type == TASK_MULTI_LABEL
    with pytest.raises(InvalidInput, match="task type must be one of"):
        _settings(db, project, task_type="ranking")


def test_a_label_used_in_a_set_cannot_be_removed(db: Session, project: Project) -> None:
    ids = _ids(db, project)
    (item,) = make_items(db, project, ["x"])
    ann.record_label(db, project, make_user(db), item_id=item.id, label_ids=[ids["feature"]])
    with pytest.raises(Conflict, match="'feature' has 1 annotations"):
        project_service.update_project(
            db, project, _settings(db, project, labels=("billing", "bug")))


def test_gold_and_review_take_sets_in_multi_label_projects(
    db: Session, project: Project
) -> None:
    (item,) = make_items(db, project, ["x"])
    lead = make_user(db, role=ROLE_LEAD)
    with pytest.raises(InvalidInput, match="the gold answer is a list of the project's labels"):
        gold.mark_gold(db, project, item.id, "bug", by=lead)
    with pytest.raises(InvalidInput, match="has no label set to accept"):
        review.decide(db, project, lead, item_id=item.id, action="accept")
    gold.mark_gold(db, project, item.id, ["bug"], by=lead)  # was a NotSupported error
    accepted = review.decide(db, project, lead, item_id=item.id, action="accept")
    assert accepted.labels == ("bug",)  # a gold item's accepted set is its gold set
    # Overlap and several annotations per item are allowed (issue 19: agreement on sets).
    agreement.update_overlap_settings(project, rate=0.2, k=3)
    assert (project.overlap_rate, project.overlap_k) == (pytest.approx(0.2), 3)
    project_service.update_project(db, project, _settings(db, project, annotations_per_item=2))
    assert project.annotations_per_item == 2


def test_the_api_creates_multi_label_projects_and_refuses_a_late_change(
    app: FastAPI, db: Session
) -> None:
    lead = make_user(db, role=ROLE_LEAD)
    client = TestClient(app, headers={
        "Authorization": f"Bearer {make_token(db, lead, scopes=['admin'])}"})
    created = client.post("/api/v1/projects", json={
        "name": "Tags", "labels": list(LABELS), "task_type": "multi_label"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["task_type"] == "multi_label"
    wrong = client.post("/api/v1/projects", json={
        "name": "Tags", "labels": list(LABELS), "task_type": "tags"})
    assert wrong.status_code == 422
    project = db.get(Project, body["id"])
    assert project is not None
    (item,) = make_items(db, project, ["x"])
    ann.record_label(db, project, make_user(db, role=ROLE_ANNOTATOR), item_id=item.id,
                     label_ids=[])
    refused = client.patch(f"/api/v1/projects/{project.id}",
                           json={"task_type": "single_label"})
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["details"]["annotations"] == 1


def test_retrains_are_allowed_queue_runs_refused_and_a_closed_batch_asks_for_a_retrain(
    db: Session, project: Project
) -> None:
    from app.db.models import RUN_RETRAIN
    from app.domain.annotation.batches import submit_batch
    from app.domain.runs import (
        request_pool_scoring,
        request_queue_recompute,
        request_retrain,
        request_tapt,
    )

    with pytest.raises(NotSupported, match="always built by the live head") as refused:
        request_queue_recompute(db, project, reason="test")
    assert refused.value.details == {"task_type": "multi_label", "kind": "recompute_queue"}
    with pytest.raises(NotSupported, match="pool scoring"):
        request_pool_scoring(db, project, 1, reason="test")
    assert request_tapt(db, project, reason="test").kind == "tapt"  # label-free: allowed
    asked = request_retrain(db, project, reason="test")  # a multi-label adapter round
    assert asked.kind == RUN_RETRAIN
    (item,) = make_items(db, project, ["x"])
    user = make_user(db)
    ann.record_label(db, project, user, item_id=item.id, label_ids=[_ids(db, project)["bug"]])
    before = project.data_version
    run = submit_batch(db, project, user)
    assert run is not None and run.id == asked.id  # the queued retrain absorbs the request
    assert run.params["requests"] == 2
    db.refresh(project)
    assert project.data_version == before + 1
