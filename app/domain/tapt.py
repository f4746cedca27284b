"""TAPT seen from the web: its default step budgets and how long a run will take on this machine.

The defaults live here (not in the worker) so that the web can say what a TAPT run with the default
budget costs without importing the ML stack; ``worker/tasks/tapt_job.py`` applies them.

The time estimate is *measured*, never assumed: every finished TAPT run records its wall-clock
seconds, its steps, its tokens per step and whether it ran on a GPU (``TrainingRun.timings``,
written by the TAPT task), and a running one reports its step and heartbeat. The estimate takes the
newest such measurement -- this project's first, then another project's with the same base model,
then any -- and scales it by tokens per step. With no measurement yet it says so instead of
guessing; a running TAPT run shows its own ETA after its first steps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import RUN_RUNNING, RUN_SUCCEEDED, RUN_TAPT, Project, TrainingRun

CPU_DEFAULTS: dict[str, Any] = {
    "max_steps": 200,
    "batch_size": 16,
    "max_length": 128,
    "eval_every": 50,
    "patience": 2,
}
GPU_DEFAULTS: dict[str, Any] = {
    "max_steps": 3000,
    "batch_size": 32,
    "max_length": 128,
    "eval_every": 200,
    "patience": 3,
}
MEASUREMENTS_SCANNED = 50
"""How many recent TAPT runs the estimate looks through for a measurement."""


def default_tapt_config(on_gpu: bool) -> dict[str, Any]:
    return dict(GPU_DEFAULTS if on_gpu else CPU_DEFAULTS)


@dataclass(frozen=True)
class TaptEstimate:
    """How long ``steps`` TAPT steps should take here, and what the figure rests on.

    ``seconds`` is None when nothing was measured yet on this installation. Early stopping on
    held-out perplexity can end a run sooner; the estimate is for the whole step budget.
    """

    steps: int
    seconds: float | None
    seconds_per_step: float | None
    basis: str
    measured_run_id: int | None = None
    on_gpu: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "seconds": self.seconds,
            "seconds_per_step": self.seconds_per_step,
            "basis": self.basis,
            "measured_run_id": self.measured_run_id,
            "on_gpu": self.on_gpu,
        }

    @property
    def text(self) -> str:
        """One line for a page or a terminal, e.g. "200 steps ~ 6 min (measured: ...)"."""
        if self.seconds is None:
            return f"{self.steps:,} steps: no time estimate yet ({self.basis})"
        return f"{self.steps:,} steps ~ {format_duration(self.seconds)} ({self.basis})"


@dataclass(frozen=True)
class _Measurement:
    run_id: int
    project_id: int
    base_model: str
    seconds_per_step: float
    tokens_per_step: int | None
    on_gpu: bool | None
    steps: int


def estimate_tapt_seconds(
    session: Session,
    project: Project,
    steps: int | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> TaptEstimate:
    """Estimate the wall-clock time of a TAPT run of ``steps`` steps on ``project`` here.

    ``steps`` None means the default budget of the device the measurement ran on; ``overrides``
    are the TaptConfig fields the request changes (``batch_size``, ``max_length`` scale the
    measured time per step by tokens per step).
    """
    overrides = dict(overrides or {})
    measurement = _best_measurement(session, project)
    on_gpu = measurement.on_gpu if measurement is not None else None
    config = {**default_tapt_config(bool(on_gpu)), **overrides}
    if steps is None:
        steps = int(overrides.get("max_steps", config["max_steps"]))
    minutes = float(overrides.get("max_minutes") or 0.0)
    if measurement is None:
        fitted = (
            f"; the run fits its steps to the {format_duration(minutes * 60)} budget from the "
            "pace of its first steps" if minutes > 0 else ""
        )
        return TaptEstimate(
            steps=steps,
            seconds=None,
            seconds_per_step=None,
            basis="no TAPT run has been measured on this installation yet; a running one shows "
            f"its own ETA after its first steps{fitted}",
        )
    per_step = measurement.seconds_per_step
    tokens = int(config["batch_size"]) * int(config["max_length"])
    if measurement.tokens_per_step:
        per_step *= tokens / measurement.tokens_per_step
    where = "this project" if measurement.project_id == project.id else "another project"
    device = "GPU" if measurement.on_gpu else "CPU" if measurement.on_gpu is not None else "worker"
    basis = (
        f"measured on this machine's {device}: {measurement.seconds_per_step:.2f} s/step over "
        f"{measurement.steps} steps of run {measurement.run_id} ({where})"
    )
    if minutes > 0 and per_step * steps > minutes * 60:
        steps = max(1, int(minutes * 60 / per_step))
        basis += f"; fitted to the {format_duration(minutes * 60)} budget"
    return TaptEstimate(
        steps=steps,
        seconds=round(per_step * steps, 1),
        seconds_per_step=round(per_step, 4),
        basis=basis,
        measured_run_id=measurement.run_id,
        on_gpu=measurement.on_gpu,
    )


def _best_measurement(session: Session, project: Project) -> _Measurement | None:
    rows = session.execute(
        select(TrainingRun, Project.base_model)
        .join(Project, Project.id == TrainingRun.project_id)
        .where(TrainingRun.kind == RUN_TAPT, TrainingRun.status.in_((RUN_SUCCEEDED, RUN_RUNNING)))
        .order_by(TrainingRun.id.desc())
        .limit(MEASUREMENTS_SCANNED)
    ).all()
    found = [m for run, base in rows if (m := _measurement(run, base)) is not None]

    def rank(m: _Measurement) -> int:
        if m.project_id == project.id:
            return 0
        return 1 if m.base_model == project.base_model else 2

    return min(found, key=rank, default=None)  # min is stable: the newest of the best rank


def _measurement(run: TrainingRun, base_model: str) -> _Measurement | None:
    timings = run.timings or {}
    seconds, steps = timings.get("tapt_seconds"), timings.get("tapt_steps")
    if run.status == RUN_RUNNING:
        if run.started_at is None or run.heartbeat_at is None or run.step <= 0:
            return None
        seconds, steps = (run.heartbeat_at - run.started_at).total_seconds(), run.step
        timings = {**_config_timings(run), **timings}
    if not isinstance(seconds, int | float) or not isinstance(steps, int) or steps <= 0:
        return None
    if seconds <= 0:
        return None
    tokens = timings.get("tapt_tokens_per_step")
    on_gpu = timings.get("tapt_on_gpu")
    return _Measurement(
        run_id=run.id,
        project_id=run.project_id,
        base_model=base_model,
        seconds_per_step=float(seconds) / steps,
        tokens_per_step=int(tokens) if isinstance(tokens, int | float) and tokens > 0 else None,
        on_gpu=on_gpu if isinstance(on_gpu, bool) else None,
        steps=steps,
    )


def _config_timings(run: TrainingRun) -> dict[str, Any]:
    """A running run's tokens per step from its request (CPU defaults where it set none)."""
    requested = dict(run.params.get("tapt_config") or {})
    config = {**CPU_DEFAULTS, **requested}
    try:
        return {"tapt_tokens_per_step": int(config["batch_size"]) * int(config["max_length"])}
    except (TypeError, ValueError):
        return {}


def tapt_timings(
    seconds: float, steps: int, batch_size: int, max_length: int, on_gpu: bool
) -> dict[str, Any]:
    """What a finished TAPT run records for later estimates (``TrainingRun.timings``)."""
    return {
        "tapt_seconds": round(seconds, 3),
        "tapt_steps": steps,
        "tapt_tokens_per_step": batch_size * max_length,
        "tapt_on_gpu": on_gpu,
    }


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
