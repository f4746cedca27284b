"""``estimate_tapt_seconds``: TAPT time from runs measured on this installation, never a guess."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import (
    RUN_FAILED,
    RUN_RUNNING,
    RUN_SUCCEEDED,
    RUN_TAPT,
    SPLIT_POOL,
    SPLIT_TEST,
    Item,
    TrainingRun,
)
from app.domain.tapt import CPU_DEFAULTS, GPU_DEFAULTS, estimate_tapt_seconds, tapt_timings
from tests.factories import make_project


def _finished_tapt(db: Session, project_id: int, seconds: float, steps: int, **kw: object) -> int:
    timings = tapt_timings(seconds, steps, int(kw.get("batch", 16)), 128, bool(kw.get("gpu")))
    run = TrainingRun(
        project_id=project_id, kind=RUN_TAPT, status=str(kw.get("status", RUN_SUCCEEDED)),
        timings=timings,
    )
    db.add(run)
    db.flush()
    return run.id


def test_no_measurement_gives_no_figure_and_says_why(db: Session) -> None:
    project = make_project(db)
    estimate = estimate_tapt_seconds(db, project, 500)
    assert estimate.seconds is None and estimate.seconds_per_step is None
    assert estimate.steps == 500
    assert "no TAPT run has been measured" in estimate.text


def test_default_steps_and_the_measured_rate(db: Session) -> None:
    project = make_project(db)
    run_id = _finished_tapt(db, project.id, seconds=100.0, steps=20)
    estimate = estimate_tapt_seconds(db, project)
    assert estimate.steps == CPU_DEFAULTS["max_steps"]
    assert estimate.seconds_per_step == 5.0
    assert estimate.seconds == 5.0 * CPU_DEFAULTS["max_steps"]
    assert estimate.measured_run_id == run_id
    assert "5.00 s/step over 20 steps" in estimate.basis and "this project" in estimate.basis
    assert "17 min" in estimate.text


def test_scales_with_tokens_per_step_and_prefers_this_project(db: Session) -> None:
    project, other = make_project(db), make_project(db)
    _finished_tapt(db, project.id, seconds=40.0, steps=20)  # 2 s/step at 16 x 128
    newer_elsewhere = _finished_tapt(db, other.id, seconds=400.0, steps=20)
    mine = estimate_tapt_seconds(db, project, 10, {"batch_size": 32})
    assert mine.seconds == 40.0  # 2 s/step x 2 (twice the tokens) x 10 steps
    third = make_project(db)
    assert estimate_tapt_seconds(db, third, 10).measured_run_id == newer_elsewhere


def test_failed_runs_are_not_measurements_but_a_running_one_is(db: Session) -> None:
    project = make_project(db)
    _finished_tapt(db, project.id, seconds=1.0, steps=20, status=RUN_FAILED)
    assert estimate_tapt_seconds(db, project, 10).seconds is None
    started = utcnow()
    db.add(TrainingRun(
        project_id=project.id, kind=RUN_TAPT, status=RUN_RUNNING, step=4,
        started_at=started, heartbeat_at=started + timedelta(seconds=12),
    ))
    db.flush()
    assert estimate_tapt_seconds(db, project, 10).seconds == 30.0


def test_on_a_gpu_the_default_budget_is_scaled_to_the_pool(db: Session) -> None:
    """3 epochs over the pool's estimated packed blocks, within 3,000-20,000 steps."""
    small, large = make_project(db), make_project(db)
    _finished_tapt(db, small.id, seconds=20.0, steps=200, batch=32, gpu=True)
    _finished_tapt(db, large.id, seconds=20.0, steps=200, batch=32, gpu=True)
    text = "x" * 512 * 4  # 512 estimated tokens: 4 blocks of 128
    for project, n in ((small, 20), (large, 20_000)):
        db.add_all([Item(project_id=project.id, text=text, content_hash=f"{project.id}-{i}",
                         split=SPLIT_POOL) for i in range(n)])
    db.add(Item(project_id=large.id, text=text * 50, content_hash="t", split=SPLIT_TEST))
    db.flush()
    assert estimate_tapt_seconds(db, small).steps == GPU_DEFAULTS["min_steps"]
    held = 1000  # 10 % of the pool, at most 1,000 texts
    expected = -(-3 * (20_000 - held) * 4 // 32)  # 3 epochs of 19,000 texts x 4 blocks
    estimate = estimate_tapt_seconds(db, large)
    assert estimate.steps == min(expected, GPU_DEFAULTS["max_steps"])
    assert estimate.basis.startswith(
        "3 passes over about 76,000 blocks of 128 tokens of this pool, within 3,000-20,000 steps;")
    assert estimate_tapt_seconds(db, large, 700).steps == 700  # named steps: exactly those
