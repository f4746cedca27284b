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

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import (
    RUN_RUNNING,
    RUN_SUCCEEDED,
    RUN_TAPT,
    SPLIT_POOL,
    Item,
    Project,
    TrainingRun,
)
from app.errors import InvalidInput
from contract.tapt_budget import estimated_units, planned_steps

CPU_DEFAULTS: dict[str, Any] = {
    "max_steps": 200,
    "batch_size": 16,
    "max_length": 128,
    "eval_every": 50,
    "patience": 2,
}
"""A short fixed budget: on a CPU worker a pool-scaled run (one epoch of a 10,000-text pool is
hundreds of steps of seconds each) costs hours, and its gain was not measured to pay there;
TAPT is never started by itself, a lead asks for it (docs/results.md, "TAPT")."""
GPU_DEFAULTS: dict[str, Any] = {
    "epochs": 3.0,
    "min_steps": 3000,
    "max_steps": 20000,
    "batch_size": 32,
    "max_length": 128,
    "eval_every": 200,
    "patience": 3,
}
"""Scaled to the pool (``contract.tapt_budget``): 3 passes over its packed blocks within the
playbook's 3k-20k steps (its 100,000-ticket case study ran ~8k; 3 epochs of 100,000 texts of
~100 tokens at 32 x 128 per step is ~7k), early-stopped on held-out perplexity."""
HELDOUT_FRACTION, HELDOUT_CAP = 0.1, 1000
"""As ``worker.ml.tapt.TaptConfig``'s ``heldout_fraction`` and ``max_heldout`` defaults."""
MEASUREMENTS_SCANNED = 50
"""How many recent TAPT runs the estimate looks through for a measurement."""


def default_tapt_config(on_gpu: bool) -> dict[str, Any]:
    return dict(GPU_DEFAULTS if on_gpu else CPU_DEFAULTS)


BUDGET_BOUNDS: dict[str, tuple[type, float, float]] = {
    "max_steps": (int, 1, 100_000),
    "min_steps": (int, 0, 100_000),
    "batch_size": (int, 1, 4096),
    "max_length": (int, 8, 8192),
    "epochs": (float, 0, 100),
    "max_minutes": (float, 0, 7 * 24 * 60),
}
"""The budget fields a request may set, checked when it is made (the web plans with them);
the worker checks every TaptConfig field again when the run starts."""


def check_tapt_overrides(overrides: Mapping[str, Any] | None) -> None:
    """Refuse a request whose budget fields are not numbers in range, before it is queued."""
    for key, (kind, low, high) in BUDGET_BOUNDS.items():
        if overrides is None or key not in overrides:
            continue
        value = overrides[key]
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or (kind is int and value != int(value)) or not low <= value <= high:
            what = "a whole number" if kind is int else "a number"
            raise InvalidInput(f"TAPT {key} must be {what} between {low:g} and {high:g}, got "
                               f"{value!r}.", details={"field": key})


def tapt_config(on_gpu: bool, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The device's defaults with a request's overrides. A request that names its steps
    (``max_steps``) and not ``epochs`` gets exactly those steps, not the pool-scaled budget."""
    overrides = dict(overrides or {})
    config = {**default_tapt_config(on_gpu), **overrides}
    if "max_steps" in overrides and "epochs" not in overrides:
        config["epochs"] = 0.0
    return config


def pool_units(session: Session, project: Project, config: Mapping[str, Any]) -> int:
    """Training sequences per epoch of ``project``'s pool, estimated from its characters
    (packed blocks; texts when ``packing`` is off), less the held-out share."""
    texts, characters = session.execute(
        select(func.count(Item.id), func.coalesce(func.sum(func.length(Item.text)), 0))
        .where(Item.project_id == project.id, Item.split == SPLIT_POOL)
    ).one()
    held = min(HELDOUT_CAP, round(int(texts) * HELDOUT_FRACTION))
    share = (int(texts) - held) / int(texts) if texts else 0.0
    units = estimated_units(int(characters), int(config.get("max_length", 128)),
                            bool(config.get("packing", True)), int(texts))
    return int(units * share)


def planned_tapt_steps(
    session: Session, project: Project, config: Mapping[str, Any]
) -> tuple[int, str]:
    """The steps a TAPT run with ``config`` will plan for this project's pool (as the worker
    will, from its tokenised blocks rather than an estimate of them), and how, in words ("" for
    a fixed budget)."""
    epochs = float(config.get("epochs") or 0.0)
    if epochs <= 0:
        return int(config["max_steps"]), ""
    units = pool_units(session, project, config)
    low, high = int(config.get("min_steps") or 0), int(config["max_steps"])
    steps = planned_steps(max_steps=high, epochs=epochs, min_steps=low,
                          batch_size=int(config["batch_size"]), units=units)
    return steps, (f"{epochs:g} passes over about {units:,} blocks of "
                   f"{int(config.get('max_length', 128))} tokens of this pool, within "
                   f"{min(low, high):,}-{high:,} steps")


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

    ``steps`` None means the default budget of the device the measurement ran on (on a GPU,
    scaled to this project's pool: ``planned_tapt_steps``); ``overrides`` are the TaptConfig
    fields the request changes (``batch_size``, ``max_length`` scale the measured time per step by
    tokens per step).
    """
    overrides = dict(overrides or {})
    if steps is not None:
        overrides["max_steps"] = steps
    measurement = _best_measurement(session, project)
    on_gpu = measurement.on_gpu if measurement is not None else None
    config = tapt_config(bool(on_gpu), overrides)
    steps, plan = planned_tapt_steps(session, project, config)
    plan = f"{plan}; " if plan else ""
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
            basis=f"{plan}no TAPT run has been measured on this installation yet; a running "
            f"one shows its own ETA after its first steps{fitted}",
        )
    per_step = measurement.seconds_per_step
    tokens = int(config["batch_size"]) * int(config["max_length"])
    if measurement.tokens_per_step:
        per_step *= tokens / measurement.tokens_per_step
    where = "this project" if measurement.project_id == project.id else "another project"
    device = "GPU" if measurement.on_gpu else "CPU" if measurement.on_gpu is not None else "worker"
    basis = plan + (
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
