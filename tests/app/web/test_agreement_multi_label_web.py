"""Agreement on label sets in the pages (issue 19): the settings page takes an overlap share and
several annotations per item for a multi-label project, the dashboard's tile and card show
Krippendorff's alpha (MASI) with its value, raw agreement and the disagreeing items' sets, and
the review page lists items whose sets differ, with decisions on sets. Label
names are written by leads: they stay escaped everywhere."""

from __future__ import annotations

from fastapi import FastAPI
from markupsafe import escape
from sqlalchemy.orm import Session

from app.db.models import ROLE_ANNOTATOR, ROLE_LEAD, TASK_MULTI_LABEL, Project, User
from app.domain.agreement import agreement_report, krippendorff_alpha_sets
from app.domain.annotation import record_label
from app.domain.projects import get_labels
from tests.factories import login_client, make_items, make_project, make_user

HOSTILE = "<script>alert('x')</script>"
LABELS = ("billing", "bug", HOSTILE)


def _world(db: Session) -> tuple[Project, User, User]:
    ana = make_user(db, role=ROLE_ANNOTATOR, name="Ana")
    ben = make_user(db, role=ROLE_ANNOTATOR, name="Ben")
    project = make_project(db, labels=LABELS, annotators=[ana, ben], task_type=TASK_MULTI_LABEL)
    return project, ana, ben


def _label(db: Session, project: Project, sets: dict[User, list[list[str]]]) -> None:
    ids = {label.name: label.id for label in get_labels(db, project.id)}
    count = max(len(v) for v in sets.values())
    items = make_items(db, project, [f"ticket {i} <i>x</i>" for i in range(count)])
    for person, answers in sets.items():
        for item, names in zip(items, answers, strict=False):
            record_label(db, project, person, item_id=item.id,
                         label_ids=[ids[n] for n in names])


def test_the_settings_page_accepts_overlap_for_a_multi_label_project(
    app: FastAPI, db: Session
) -> None:
    project, _, _ = _world(db)
    lead = login_client(app, db, role=ROLE_LEAD, project=project)
    page = lead.get(f"/projects/{project.id}/settings")
    assert page.status_code == 200
    assert 'id="overlap-multi-label"' in page.text and "MASI" in page.text
    saved = lead.post(f"/projects/{project.id}/settings/overlap",
                      data={"overlap_percent": "30", "overlap_k": "3",
                            "agreement_min_kappa": "0.667"}, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    db.refresh(project)
    assert (project.overlap_rate, project.overlap_k) == (0.3, 3)
    assert project.agreement_min_kappa == 0.667
    general = lead.post(f"/projects/{project.id}/settings", data={
        "name": project.name, "labels": "\n".join(LABELS), "task_type": "multi_label",
        "annotations_per_item": "2"}, follow_redirects=False)
    assert general.status_code == 303, general.text
    db.refresh(project)
    assert project.annotations_per_item == 2
    single = make_project(db, labels=("a", "b"))
    lead_single = login_client(app, db, role=ROLE_LEAD, project=single)
    assert 'id="overlap-multi-label"' not in lead_single.get(
        f"/projects/{single.id}/settings").text


def test_the_dashboard_shows_alpha_masi_and_the_disagreeing_sets(
    app: FastAPI, db: Session
) -> None:
    project, ana, ben = _world(db)
    lead = login_client(app, db, role=ROLE_LEAD, project=project)
    off = lead.get(f"/projects/{project.id}/dashboard").text
    assert "n/a: no item has two labels yet" in off  # overlap is on by default, nothing shared
    _label(db, project, {
        ana: [["billing"], ["bug", "billing"], [HOSTILE], [], ["bug"]],
        ben: [["billing"], ["bug"], [], [], ["bug"]],
    })
    report = agreement_report(db, project.id)
    ids = {label.name: label.id for label in get_labels(db, project.id)}

    def s(*names: str) -> frozenset[int]:
        return frozenset(ids[n] for n in names)

    expected = krippendorff_alpha_sets([
        [s("billing"), s("billing")], [s("bug", "billing"), s("bug")], [s(HOSTILE), s()],
        [s(), s()], [s("bug"), s("bug")]])
    assert expected is not None and report.kappa == expected

    page = lead.get(f"/projects/{project.id}/dashboard")
    assert page.status_code == 200
    html = page.text
    statistic = escape("Krippendorff's α (MASI)")
    assert f"{statistic} · {report.interpretation}" in html  # the tile
    assert f"{expected:.2f}" in html
    assert f"<strong>{statistic} = {expected:.3f}</strong>" in html  # the card
    assert "raw agreement 60%" in html
    assert "2 disagreeing items (different label sets)" in html
    assert "Ana: billing, bug" in html and "Ben: bug" in html
    assert f"Ana: {escape(HOSTILE)}" in html and "Ben: none of these" in html
    assert HOSTILE not in html and "<i>x</i>" not in html  # names and texts stay escaped
    assert "α-MASI against the set most of the others gave" in html
    assert "Cohen" not in html and "Fleiss&#39; κ = " not in html


def test_the_review_page_lists_differing_sets_with_set_decisions(
    app: FastAPI, db: Session
) -> None:
    project, ana, ben = _world(db)
    _label(db, project, {ana: [["billing"], [HOSTILE, "bug"]], ben: [["billing"], ["bug"]]})
    reviewer = login_client(app, db, role=ROLE_LEAD, project=project)
    page = reviewer.get(f"/projects/{project.id}/review")
    assert page.status_code == 200
    html = page.text
    assert html.count('data-reason="disagreement"') == 1
    assert f"bug, {escape(HOSTILE)}" in html  # Ana's set, in label order
    assert "majority set" in html and "review-not-supported" not in html
    assert 'data-action="accept"' in html and 'name="label_ids"' in html  # decisions on sets
    assert HOSTILE not in html
    api = reviewer.get(f"/api/v1/projects/{project.id}/review").json()
    (entry,) = api["disagreements"]
    assert {v["label"] for v in entry["votes"]} == {f"bug, {HOSTILE}", "bug"}
