"""Agreement over HTTP (issue 16): the lead's API and dashboard table, the overlap settings with
the same bounds on the page and in the API, and what annotators and other projects' leads may not
read (agreement, and other annotators' labels on an overlap item they still have to label)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from sqlalchemy.orm import Session

from app.db.models import ROLE_ANNOTATOR, ROLE_LEAD, Annotation, Project
from app.domain import annotation as ann
from app.domain import guidelines
from app.domain.annotation import overlap
from app.domain.projects import get_labels
from tests.factories import login_client, make_items, make_project, make_user


def _world(app: FastAPI, db: Session) -> tuple[Project, Any, Any, Any, list[Any]]:
    first = make_user(db, role=ROLE_ANNOTATOR, email="first@example.com", name="First")
    second = make_user(db, role=ROLE_ANNOTATOR, email="second@example.com", name="Second")
    project = make_project(db, labels=("sports", "finance"), annotators=[first, second])
    items = make_items(db, project, [f"candidate text {i}" for i in range(6)])
    lead = login_client(app, db, role=ROLE_LEAD, project=project)
    return (
        project,
        lead,
        login_client(app, user=first),
        login_client(app, user=second),
        [first, second, *items],
    )


def _vote(db: Session, project: Project, user: Any, item: Any, label: str) -> None:
    by_name = {lbl.name: lbl for lbl in get_labels(db, project.id)}
    db.add(
        Annotation(
            project_id=project.id, item_id=item.id, annotator_id=user.id, label_id=by_name[label].id
        )
    )
    db.flush()


def test_annotators_and_other_projects_leads_cannot_read_agreement(
    app: FastAPI, db: Session
) -> None:
    project, lead, member, _, _ = _world(app, db)
    for path in (f"/api/v1/projects/{project.id}/agreement", f"/projects/{project.id}/dashboard"):
        assert member.get(path).status_code == 403, path
    assert (
        member.patch(
            f"/api/v1/projects/{project.id}/agreement-settings", json={"overlap_rate": 0.5}
        ).status_code
        == 403
    )
    assert (
        member.post(
            f"/projects/{project.id}/settings/overlap", data={"overlap_percent": "50"}
        ).status_code
        == 403
    )
    other = make_project(db)
    stranger = login_client(app, db, role=ROLE_LEAD, project=other)
    assert stranger.get(f"/api/v1/projects/{project.id}/agreement").status_code == 404
    assert (
        stranger.patch(
            f"/api/v1/projects/{project.id}/agreement-settings", json={"overlap_rate": 0.5}
        ).status_code
        == 404
    )
    assert (
        stranger.post(
            f"/projects/{project.id}/settings/overlap", data={"overlap_percent": "50"}
        ).status_code
        == 404
    )
    assert project.overlap_rate == 0.1  # nothing changed
    assert lead.get(f"/api/v1/projects/{project.id}/agreement").status_code == 200


def test_overlap_settings_have_the_same_bounds_on_the_page_and_in_the_api(
    app: FastAPI, db: Session
) -> None:
    project, lead, _, _, _ = _world(app, db)
    page = lead.get(f"/projects/{project.id}/settings")
    assert 'id="overlap"' in page.text and 'name="overlap_k" min="2" max="5"' in page.text
    saved = lead.post(
        f"/projects/{project.id}/settings/overlap",
        data={
            "overlap_percent": "25",
            "overlap_k": "3",
            "agreement_min_kappa": "0.5",
            "agreement_min_items": "8",
        },
    )
    assert "Overlap and agreement settings saved." in saved.text
    assert (
        project.overlap_rate,
        project.overlap_k,
        project.agreement_min_kappa,
        project.agreement_min_items,
    ) == (0.25, 3, 0.5, 8)
    for bad, message in (
        ({"overlap_percent": "150"}, "between 0 and 1"),
        ({"overlap_k": "6"}, "between 2 and 5"),
        ({"overlap_k": "1"}, "between 2 and 5"),
        ({"overlap_percent": "nan"}, "between 0 and 1"),
        ({"agreement_min_kappa": "2"}, "between -1 and 1"),
    ):
        reply = lead.post(
            f"/projects/{project.id}/settings/overlap", data={"overlap_percent": "50", **bad}
        )
        assert reply.status_code == 422 and message in reply.text, bad
        assert (project.overlap_rate, project.overlap_k) == (0.25, 3)
    api = f"/api/v1/projects/{project.id}/agreement-settings"
    for bad in (
        {"overlap_rate": 1.5},
        {"overlap_rate": -0.1},
        {"overlap_k": 1},
        {"overlap_k": 6},
        {"min_items": 0},
        {"unknown": 1},
    ):
        assert lead.patch(api, json=bad).status_code == 422, bad
    reply = lead.patch(api, json={"overlap_rate": 0.0, "overlap_k": 5})
    assert reply.status_code == 200
    assert (reply.json()["overlap_rate"], reply.json()["overlap_k"]) == (0.0, 5)
    assert (project.overlap_rate, project.overlap_k) == (0.0, 5)


def test_api_and_dashboard_show_agreement_per_pair_class_and_annotator(
    app: FastAPI, db: Session
) -> None:
    project, lead, _, _, (first, second, *items) = _world(app, db)
    empty = lead.get(f"/projects/{project.id}/dashboard").text
    assert "n/a: no item has two labels yet" in empty
    body = lead.get(f"/api/v1/projects/{project.id}/agreement").json()
    assert (body["items"], body["kappa"], body["alpha"], body["annotators"]) == (0, None, None, [])

    lead.patch(
        f"/api/v1/projects/{project.id}/agreement-settings", json={"min_kappa": 0.5, "min_items": 3}
    )
    # First and Second agree on 3 of 4 shared items: p_o 3/4; First: s s f f, Second: s f f f
    # -> p_e = (2*1 + 2*3)/16 = 1/2 -> Cohen's kappa 1/2 (not below 0.5: nobody flagged).
    for item, (a, b) in zip(
        items,
        [
            ("sports", "sports"),
            ("sports", "finance"),
            ("finance", "finance"),
            ("finance", "finance"),
        ],
        strict=False,
    ):
        overlap.mark(db, project, item.id)
        _vote(db, project, first, item, a)
        _vote(db, project, second, item, b)
    body = lead.get(f"/api/v1/projects/{project.id}/agreement").json()
    assert body["items"] == 4 and body["overlap_items"] == 4
    (pair,) = body["pairs"]
    assert (pair["items"], pair["percent"]) == (4, 0.75)
    assert abs(pair["kappa"] - 0.5) < 1e-9
    assert {c["label"] for c in body["per_class"]} == {"sports", "finance"}
    assert [a["flagged"] for a in body["annotators"]] == [False, False]
    lead.patch(f"/api/v1/projects/{project.id}/agreement-settings", json={"min_kappa": 0.6})
    body = lead.get(f"/api/v1/projects/{project.id}/agreement").json()
    assert all(a["flagged"] for a in body["annotators"])  # both at 0.5, below 0.6

    page = lead.get(f"/projects/{project.id}/dashboard").text
    assert "agreement-annotators" in page and "Krippendorff" in page and "flagged" in page
    assert "counts 2" in page  # the budget text: every label a person makes counts


def test_an_annotator_cannot_read_others_labels_on_an_open_overlap_item(
    app: FastAPI, db: Session
) -> None:
    project, lead, first_client, second_client, (first, second, shared, plain, *_) = _world(app, db)
    overlap.mark(db, project, shared.id)
    _vote(db, project, first, shared, "sports")
    _vote(db, project, first, plain, "finance")

    def seen(client: Any) -> set[tuple[int, str]]:
        rows = client.get(f"/api/v1/projects/{project.id}/annotations").json()["annotations"]
        listed = {(r["item_id"], r["annotator"]) for r in rows}
        by_item = client.get(
            f"/api/v1/projects/{project.id}/annotations", params={"item_id": shared.id}
        ).json()["annotations"]
        listed |= {(r["item_id"], r["annotator"]) for r in by_item}
        export = client.get(f"/api/v1/projects/{project.id}/annotations/export").text
        if "candidate text 0" in export:
            listed.add((shared.id, "export"))
        return listed

    second_sees = seen(second_client)
    assert second_sees == set()  # an annotator sees only their own labels, overlap or not
    assert shared.id in {i for i, _ in seen(first_client)}  # their own label they see
    assert shared.id in {i for i, _ in seen(lead)}  # the lead sees everything
    _vote(db, project, second, shared, "finance")  # Second labelled it: done (2 of 2)
    assert shared.id in {i for i, _ in seen(second_client)}


def test_agreement_is_split_by_the_guidelines_version_labels_were_made_under(
    app: FastAPI, db: Session
) -> None:
    project, lead, _, _, (first, second, *items) = _world(app, db)
    labels = {lbl.name: lbl for lbl in get_labels(db, project.id)}

    def both(item: Any, a: str, b: str) -> None:
        for user, name in ((first, a), (second, b)):
            ann.record_label(db, project, user, item_id=item.id, label_id=labels[name].id)

    both(items[0], "sports", "sports")
    both(items[1], "sports", "finance")
    assert guidelines.set_guidelines(db, project, "Finance wins ties.", by=None)
    both(items[2], "finance", "finance")
    both(items[3], "sports", "sports")
    body = lead.get(f"/api/v1/projects/{project.id}/agreement").json()
    rows = {row["version"]: row for row in body["by_version"]}
    assert project.guidelines_version in rows and len(rows) == 2
    before, after = sorted(rows)
    assert (rows[before]["items"], rows[before]["percent_agreement"]) == (2, 0.5)
    assert (rows[after]["items"], rows[after]["percent_agreement"]) == (2, 1.0)
    assert body["mixed_version_items"] == 0
    page = lead.get(f"/projects/{project.id}/dashboard").text
    assert "agreement-versions" in page
