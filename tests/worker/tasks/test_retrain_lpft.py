"""Adapter rounds on the product side: LP-FT from the live head, and CPU rounds by label growth."""

from __future__ import annotations

from sqlalchemy import select

from app.db.models import RUN_SUCCEEDED, ModelVersion, Project, RoundMetric
from tests.app.domain.runs_support import Db
from tests.worker.tasks.seed import Seeded
from tests.worker.tasks.test_retrain import retrain
from worker.tasks.live_refit import refit_live_head


def test_a_round_starts_from_the_live_head_and_cpu_rounds_wait_for_label_growth(
    file_db: Db, seeded: Seeded
) -> None:
    file_db.settings.adapter_growth_factor = 2.0
    first = retrain(file_db, seeded, 12)
    assert first.status == RUN_SUCCEEDED, first.error
    assert first.model_version_id is not None
    # the live head is fitted on these 12 labels; the next round must start from it
    assert refit_live_head(seeded.project_id, file_db.settings, file_db.sessions) is not None
    waiting = retrain(file_db, seeded, 3)  # 15 labels < 2 x 12
    assert waiting.status == RUN_SUCCEEDED and "skipped on this CPU worker" in waiting.message
    assert waiting.model_version_id is None
    second = retrain(file_db, seeded, 9)  # 24 labels = 2 x 12
    assert second.status == RUN_SUCCEEDED, second.error
    # the head starts from a regression on the stored embeddings of all 24 labels, the 12 the
    # live refit has not seen yet included
    assert "head from a logistic regression on the stored embeddings of this round's 24 labels" \
        in second.log_tail
    with file_db.session() as session:
        project = session.get(Project, seeded.project_id)
        versions = list(session.scalars(select(ModelVersion).order_by(ModelVersion.version)))
    assert project is not None and [v.version for v in versions] == [1, 2]
    assert project.current_model_version_id == second.model_version_id
    from app.domain.model_versions import resolve_artifact
    from worker.ml.artifacts import load_artifact, read_meta

    path = resolve_artifact(versions[1].artifact_path, file_db.settings)
    assert read_meta(path)["adapter_config"]["pooling"] == "mean"  # the live head's input
    assert load_artifact(path).predict_proba(["goal team"]).shape == (1, 3)
    with file_db.session() as session:
        metrics = {m.model_version_id: m for m in session.scalars(select(RoundMetric))}
    first_events = [h.get("event") for h in metrics[versions[0].id].details["history"]]
    second_events = [h.get("event") for h in metrics[versions[1].id].details["history"]]
    assert "head_init" not in first_events  # no live head existed yet
    assert "head_init" in second_events  # LP-FT: the head started as the live head
