"""The lead dashboard over HTTP: plots with data, settings forms, the adapter card, access."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import FastAPI
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import ROLE_ANNOTATOR, ROLE_LEAD, ModelVersion, Project
from tests.app.domain.annotation_data import add_rounds
from tests.factories import login_client, make_project


def _lead(app: FastAPI, db: Session) -> tuple[Project, object]:
    project = make_project(db, labels=("sports", "finance", "science"))
    client = login_client(app, db, role=ROLE_LEAD, project=project)
    return project, client


def test_dashboard_draws_the_learning_curve_confusion_and_stop_advice(
    app: FastAPI, db: Session
) -> None:
    project, client = _lead(app, db)
    add_rounds(db, project, [(100, 0.6, 0.52), (200, 0.7, 0.64), (300, 0.74, 0.7)], stop=True)
    page = client.get(f"/projects/{project.id}/dashboard")  # type: ignore[attr-defined]
    assert page.status_code == 200
    polylines = re.findall(r'<polyline class="line-(\w+)" points="([^"]+)"', page.text)
    assert [name for name, _ in polylines] == ["f1", "acc"]
    assert all(len(points.split()) == 3 for _, points in polylines)
    assert page.text.count('<td class="diag"') == 3  # 3x3 matrix diagonal
    assert "Consider stopping" in page.text and "per 100 labels" in page.text
    assert "0.700" in page.text  # latest macro-F1


def test_empty_dashboard_explains_what_will_appear(app: FastAPI, db: Session) -> None:
    project, client = _lead(app, db)
    page = client.get(f"/projects/{project.id}/dashboard")  # type: ignore[attr-defined]
    assert page.status_code == 200
    assert "after the first retrain" in page.text and "<polyline" not in page.text


def test_stop_and_resume(app: FastAPI, db: Session) -> None:
    project, client = _lead(app, db)
    client.post(f"/projects/{project.id}/dashboard/stop", data={"stopped": "true"})  # type: ignore[attr-defined]
    assert project.stopped
    client.post(f"/projects/{project.id}/dashboard/stop", data={"stopped": "false"})  # type: ignore[attr-defined]
    assert not project.stopped


def test_adapter_card_is_shown_as_a_table_and_escaped_text(
    app: FastAPI, db: Session, settings: Settings, tmp_path: Path
) -> None:
    project, client = _lead(app, db)
    artifact = tmp_path / "v1"
    artifact.mkdir()
    (artifact / "tapestry.json").write_text("{}")
    (artifact / "README.md").write_text(
        "---\nadapter_type: lora\nadapter_config: {r: 8}\n---\n\n"
        "# Card\n<script>alert(1)</script> <img src=x onerror=alert(1)>\n"
    )
    version = ModelVersion(project_id=project.id, version=1, artifact_path=str(artifact),
                           adapter_kind="lora", labels_used=120)
    db.add(version)
    db.flush()
    project.current_model_version_id = version.id
    page = client.get(f"/projects/{project.id}/dashboard").text  # type: ignore[attr-defined]
    assert "adapter_config.r" in page and "v1" in page
    assert "<script>alert(1)</script>" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_annotators_cannot_reach_the_dashboard_or_its_settings(app: FastAPI, db: Session) -> None:
    project = make_project(db)
    client = login_client(app, db, role=ROLE_ANNOTATOR, project=project)
    budget = project.label_budget
    assert client.get(f"/projects/{project.id}/dashboard").status_code == 403
    response = client.post(f"/projects/{project.id}/dashboard/stop", data={"stopped": "true"})
    assert response.status_code == 403
    assert project.label_budget == budget and not project.stopped


def test_learning_curve_axes_include_every_point() -> None:
    from datetime import datetime

    from app.domain.dashboard import CurvePoint
    from app.web.charts import learning_curve_chart

    when = datetime(2026, 1, 1)
    for labels in ([620], [100, 230, 410, 620], [150, 1230], [55, 90, 97], [3000, 3150]):
        points = [CurvePoint(n, 0.31 + i * 0.1, 0.05 + i * 0.2, None, when)
                  for i, n in enumerate(labels)]
        chart = learning_curve_chart(points)
        dots = [d for s in chart.series for d in s.dots]
        assert len(dots) == 2 * len(labels)
        for dot in dots:
            assert chart.left <= dot.x <= chart.right, (labels, dot)
            assert chart.top <= dot.y <= chart.bottom, (labels, dot)
        assert chart.x_ticks[-1].value >= max(labels) and chart.x_ticks[0].value <= min(labels)


def test_gains_from_a_tiny_dev_set_carry_a_caution(app: FastAPI, db: Session) -> None:
    project, client = _lead(app, db)
    rows = add_rounds(db, project, [(20, 0.4, 0.3), (30, 0.6, 0.59)])
    for row in rows:
        row.details = {"dev_n": 10}
    db.flush()
    page = client.get(f"/projects/{project.id}/dashboard").text  # type: ignore[attr-defined]
    assert "+290.00 pts" in page and "tiny dev set" in page
    assert "fewer than 50 items" in page
    for row in rows:
        row.details = {"dev_n": 400}
    db.flush()
    page = client.get(f"/projects/{project.id}/dashboard").text  # type: ignore[attr-defined]
    assert "+290.00 pts" in page and "tiny dev set" not in page


def test_a_twelve_class_confusion_matrix_fits_and_lists_top_confusions(
    app: FastAPI, db: Session
) -> None:
    names = tuple(f"category number {i}" for i in range(12))
    project = make_project(db, labels=names)
    client = login_client(app, db, role=ROLE_LEAD, project=project)
    rows = add_rounds(db, project, [(100, 0.6, 0.5)])
    confusion = [[10 if r == c else 0 for c in range(12)] for r in range(12)]
    confusion[3][7] = 6
    confusion[0][1] = 2
    rows[0].confusion = confusion
    db.flush()
    page = client.get(f"/projects/{project.id}/dashboard").text  # type: ignore[attr-defined]
    assert 'class="heat heat-many"' in page and "overflow-x" not in page
    assert page.count('<td class="diag"') == 12
    top = page[page.index('class="top-confusions"'):]
    assert top.index("category number 3") < top.index("category number 0")
    assert "taken for <strong>category number 7</strong>: 6 (38% of category number 3)" in page


def test_adapter_card_summary_shows_only_the_adapters_kind(
    app: FastAPI, db: Session, settings: Settings, tmp_path: Path
) -> None:
    from worker.ml.cards import AdapterCard

    project, client = _lead(app, db)
    artifact = tmp_path / "v2"
    artifact.mkdir()
    (artifact / "tapestry.json").write_text("{}")
    config = {"kind": "lora", "r": 8, "alpha": 16, "dropout": 0.1, "targets": "attention",
              "layers": None, "bottleneck_size": 16, "placement": "serial",
              "positions": ["attention", "ffn"], "activation": "gelu",
              "num_virtual_tokens": 20, "unfreeze_last_n": 0}
    card = AdapterCard(base_model="/models/all-MiniLM-L6-v2", base_model_sha256="ab" * 32,
                       adapter_type="lora", adapter_config=config, labels=["a", "b"],
                       dev_metrics={"accuracy": 0.81, "macro_f1": 0.79, "ece": 0.05},
                       training_examples=240,
                       trainable_params=150_000, total_params=22_000_000)
    (artifact / "README.md").write_text(card.render())
    version = ModelVersion(project_id=project.id, version=2, artifact_path=str(artifact),
                           adapter_kind="lora", labels_used=240)
    db.add(version)
    db.flush()
    project.current_model_version_id = version.id
    page = client.get(f"/projects/{project.id}/dashboard").text  # type: ignore[attr-defined]
    summary = page[page.index('class="card-summary"'):page.index('class="more raw-card"')]
    assert "LoRA, rank 8, alpha 16" in summary and "query, key, value" in summary
    assert "all-MiniLM-L6-v2" in summary and "240 labels" in summary
    assert "macro-F1 0.790" in summary and "150,000 of 22,000,000" in summary
    raw = page[page.index('class="more raw-card"'):]
    assert "adapter_config.r" in raw and "adapter_config.bottleneck_size" not in raw
    assert "adapter_config.num_virtual_tokens" not in page and "defaults of other adapter" in raw


def test_without_a_dev_set_both_curves_are_drawn_and_the_served_model_is_explained(
    app: FastAPI, db: Session
) -> None:
    from datetime import timedelta

    from app.db.base import utcnow
    from app.db.models import LiveHeadState, RoundMetric

    project, client = _lead(app, db)
    start = utcnow() - timedelta(hours=3)
    for i, (used, f1) in enumerate([(60, 0.55), (120, 0.71)]):
        db.add(RoundMetric(
            project_id=project.id, labels_used=used, dev_accuracy=None, macro_f1=None,
            per_class_f1={}, confusion=[], stop_recommendations=[],
            details={"held_out": {"n": used // 6, "macro_f1": f1, "accuracy": f1,
                                  "trained_on": used - used // 6}},
            created_at=start + timedelta(hours=i),
        ))
    reason = ("no dev set: best macro-F1 on a held-out slice of 20 labels (live_head 0.600, "
              "adapter 0.710, average 0.650), the live head's out of fold; live head macro-F1 "
              "0.640 by 5-fold CV over 121 labels <b>x</b>")
    db.add(LiveHeadState(
        project_id=project.id, served="adapter", served_reason=reason, labels_used=121,
        fitted_at=utcnow(), scores={"live_head": 0.64, "slice_adapter": 0.71},
        history=[{"labels": n, "live_head": s, "served": "live_head"}
                 for n, s in ((40, 0.5), (80, 0.58), (121, 0.64))],
    ))
    db.flush()
    page = client.get(f"/projects/{project.id}/dashboard")  # type: ignore[attr-defined]
    assert page.status_code == 200
    series = dict(re.findall(r'<polyline class="line-(\w+)" points="([^"]+)"', page.text))
    assert "f1" not in series and "acc" not in series  # no dev metrics: empty lines
    assert len(series["live"].split()) == 3  # the live head per refit
    assert len(series["held"].split()) == 2  # the adapter per round, on its held-out slice
    assert 'data-testid="legend-live"' in page.text and "(cross-validation)" in page.text
    assert "adapter macro-F1 (held-out slice)" in page.text
    served = re.search(r'data-testid="served-model">(.*?)</span>', page.text, re.S)
    assert served is not None
    assert "<strong>adapter</strong>" in served.group(1)
    assert "a held-out slice of 20 labels" in served.group(1)
    assert "5-fold CV over 121 labels &lt;b&gt;x&lt;/b&gt;" in served.group(1)  # escaped
    assert "0.710 <span class=\"sub\">(held-out slice of 20)</span>" in page.text
