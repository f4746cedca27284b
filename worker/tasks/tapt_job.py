"""The TAPT body: continued masked-LM training on the project's pool, then switch the base.

The output directory is stable per run (``projects/<id>/tapt/run-<run id>``), so a re-queued
attempt after a crash resumes from the last checkpoint instead of starting over, and a finished
directory is returned as is (``run_tapt`` is idempotent). A later TAPT run is a *refresh*: it
continues from the current TAPT'd base on the (possibly grown) pool.

Step budget defaults (``app.domain.tapt``; overridable per request, see
``request_tapt(config=...)``):

- CPU: 200 steps of 16 x 128 tokens, perplexity every 50 steps. An MLM step of MiniLM on these
  2-core CPUs costs roughly 1-3 s with logits only at masked positions, so TAPT fits in a few
  minutes of a laptop demo and still lowers held-out perplexity clearly (the new MLM head of
  all-MiniLM-L6-v2 starts near ln(vocab) ~ 10 nats, which the first hundred steps mostly fix).
- GPU: 3 epochs over the pool's packed blocks of 32 x 128 tokens, within 3,000-20,000 steps (the
  playbook's range; ``contract.tapt_budget``), perplexity every 200 steps, patience 3; early
  stopping on held-out perplexity ends it sooner when done. A request that names its steps gets
  exactly those.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import SPLIT_POOL, TASK_MULTI_LABEL, Annotation, Item, Project, TrainingRun
from app.domain.live_head import request_live_refit
from app.domain.model_versions import relative_artifact_path
from app.domain.policy import live
from app.domain.runs import request_queue_recompute, request_retrain
from app.domain.tapt import (
    CPU_DEFAULTS,
    GPU_DEFAULTS,
    default_tapt_config,
    tapt_config,
    tapt_timings,
)
from worker.tasks.artifact_store import tapt_dir
from worker.tasks.project_data import load_snapshot, pool_texts
from worker.tasks.runner import Outcome, RunContext

__all__ = ["CPU_DEFAULTS", "GPU_DEFAULTS", "default_tapt_config", "tapt_body"]

def tapt_body(ctx: RunContext) -> Outcome:
    from worker.ml.runtime import resolve_device
    from worker.ml.tapt import TaptConfig, run_tapt

    with ctx.session() as session:
        snapshot = load_snapshot(session, ctx.claim.project_id, ctx.settings)
        _ids, texts = pool_texts(session, snapshot)
    overrides = dict(ctx.claim.params.get("tapt_config") or {})
    device = overrides.get("device", "auto")
    on_gpu = resolve_device(device).type == "cuda"
    config = TaptConfig.from_dict(tapt_config(on_gpu, overrides))
    base = snapshot.tapt_model_path or snapshot.base_model
    out_dir = tapt_dir(ctx.settings.artifacts, snapshot.id, ctx.claim.run_id)
    within = f" within {config.max_minutes:g} min" if config.max_minutes else ""
    epochs = (f"{config.epochs:g} epochs within {config.min_steps:,}-{config.max_steps:,} steps"
              if config.epochs else f"up to {config.max_steps:,} steps")
    ctx.reporter.set_message(
        f"TAPT on {len(texts)} pool texts from {Path(base).name}: {epochs} "
        f"of {config.batch_size} x {config.max_length} tokens{within} on "
        f"{'GPU' if on_gpu else 'CPU'}"
    )
    result = run_tapt(
        texts, base_model=base, out_dir=out_dir, config=config, reporter=ctx.reporter, resume=True
    )
    summary = {
        "steps": result.steps,
        "ppl_before": result.ppl_before,
        "ppl_after": result.ppl_after,
        "best_step": result.best_step,
        "stopped_early": result.stopped_early,
    }
    why = {"time": " (stopped at the time budget)",
           "perplexity": " (stopped early: held-out perplexity stopped improving)"}
    message = (
        f"TAPT done: held-out perplexity {result.ppl_before:.1f} -> {result.ppl_after:.1f} "
        f"after {result.steps} steps{why.get(result.stop_reason, '')}"
    )
    stored = relative_artifact_path(result.model_dir, ctx.settings)
    return Outcome(
        message,
        publish=lambda session, run: _switch_base(session, run, stored),
        metrics={k: v for k, v in summary.items() if isinstance(v, int | float | bool)},
        timings=tapt_timings(
            result.seconds, result.steps, config.batch_size, config.max_length, on_gpu
        ),
    )


def _switch_base(session: Session, run: TrainingRun, stored_path: str) -> int | None:
    """Point the project at the new base; retrain on it, or rebuild the cold-start queue."""
    project = session.get(Project, run.project_id)
    assert project is not None
    project.tapt_model_path = stored_path
    multi_label = project.task_type == TASK_MULTI_LABEL
    if multi_label:  # its queue comes from the live head: it re-reads the pool with the new
        request_live_refit(session, project.id)  # encoder (no queue rebuild to ask for)
    labelled = session.scalar(
        select(func.count(Annotation.id))
        .join(Item, Item.id == Annotation.item_id)
        .where(
            Annotation.project_id == project.id,
            live(),
            Item.split == SPLIT_POOL,
        )
    )
    if labelled:
        request_retrain(session, project.id, reason="TAPT refreshed the base model", force=True)
    elif project.current_model_version_id is None and not multi_label:
        request_queue_recompute(session, project.id, reason="TAPT model available: ALPS cold start")
    session.flush()
    return None
