"""What the single-label adapter round (:mod:`worker.tasks.retrain`) and the multi-label one
(:mod:`worker.tasks.retrain_multilabel`) share: the CPU growth wait, the default adapter layers
and pooling, the warm-start source and the JSON cleaning of a round's history.

The two round modules import from here and never from each other (``retrain`` hands a
multi-label project to ``retrain_multilabel``), so the import graph stays acyclic.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.tasks.project_data import ProjectSnapshot
    from worker.tasks.runner import RunContext

log = logging.getLogger(__name__)

TMP_SWEEP_SECONDS = 3600.0
MIN_STEPS = 30
"""Optimizer steps every round runs at least (class-balanced batches drawn with replacement), so
a round on a few dozen labels still moves the weights; a project's train_config may override."""


def growth_wait(
    ctx: RunContext, snapshot: ProjectSnapshot, labelled: int, force: bool
) -> str | None:
    """On a CPU worker, adapter rounds wait until the labels (``labelled``: labelled pool items)
    grew by ``adapter_growth_factor`` since the current version (the live head serves meanwhile);
    a GPU worker retrains every batch. None: train now."""
    factor = ctx.settings.adapter_growth_factor
    if force or factor <= 1.0 or snapshot.current_version_id is None:
        return None
    import torch

    if torch.cuda.is_available():
        return None
    from app.db.models import ModelVersion

    with ctx.session() as session:
        current = session.get(ModelVersion, snapshot.current_version_id)
        previous = current.labels_used if current is not None else 0
    needed = int(previous * factor + 0.999)
    if previous <= 0 or labelled >= needed:
        return None
    version = snapshot.current_version_number
    return (
        f"adapter round skipped on this CPU worker: {labelled} labels, the next round "
        f"starts at {needed} ({factor:g}x the {previous} of v{version}); the live head serves "
        "meanwhile"
    )


def upper_layers(base: str, adapter: dict[str, Any]) -> dict[str, Any]:
    """Adapters on the base's top layers unless the project names its layers
    (:func:`contract.adapter_config.with_default_layers`), so rounds train and score from the
    cached frozen layers below."""
    from transformers import AutoConfig

    from contract.adapter_config import with_default_layers
    from worker.ml.models import resolve_model_path

    config = AutoConfig.from_pretrained(resolve_model_path(base))
    depth = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layers", None)
    return with_default_layers(adapter, int(depth)) if depth else dict(adapter)


def with_mean_pooling(base: str, adapter: dict[str, Any]) -> dict[str, Any]:
    """Mean pooling (the live head's input) by default on bases that support it."""
    from worker.ml.pooling import supports_mean_pooling

    if "pooling" not in adapter and supports_mean_pooling(base):
        return {**adapter, "pooling": "mean"}
    return adapter


def warm_start_source(
    snapshot: ProjectSnapshot, base: str, adapter: dict[str, Any], enabled: bool, *,
    multi_label: bool = False,
) -> str | None:
    """The current version's artifact, if it was trained on this base with this adapter config
    and for this task type (``multi_label``: sigmoid outputs with thresholds).

    A TAPT refresh (new base) or a changed adapter config means training from scratch.
    """
    if not enabled or snapshot.current_artifact is None:
        return None
    from contract.errors import MLError
    from worker.ml.artifacts import is_multi_label, read_meta
    from worker.ml.models import resolve_model_path

    try:
        meta = read_meta(Path(snapshot.current_artifact))
        task_matches = is_multi_label(meta) == multi_label
    except (MLError, OSError, ValueError, KeyError) as exc:
        log.warning("no warm start: current artifact unreadable (%s)", exc)
        return None
    if meta.get("base_model") != resolve_model_path(base):
        return None
    if meta.get("adapter_config") != adapter:
        return None
    if not task_matches:
        return None
    return snapshot.current_artifact


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as None and unknown objects as strings (JSON columns)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, int | str | bool) or value is None:
        return value
    return str(value)
