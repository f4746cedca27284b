"""What the single-label adapter round (:mod:`worker.tasks.retrain`) and the multi-label one
(:mod:`worker.tasks.retrain_multilabel`) share: the CPU growth wait, the default adapter layers
and pooling, the warm-start source, writing the version's directory, the run's outcome after
training, the publishing transaction (:class:`RoundPublisher`) and the JSON cleaning of a round's
history.

The two round modules import from here and never from each other (``retrain`` hands a
multi-label project to ``retrain_multilabel``), so the import graph stays acyclic.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from app.db.models import Project, RoundMetric, TrainingRun
from app.domain.model_versions import (
    find_by_data_version,
    next_version_number,
    register_version,
    relative_artifact_path,
    switch_current,
)
from worker.tasks.artifact_store import (
    sweep_temporary,
    tree_sha256,
    version_dir_name,
    versions_dir,
    write_directory_atomically,
)
from worker.tasks.pause_points import pause_point
from worker.tasks.runner import Outcome
from worker.tasks.stop_rules import evaluate_round

if TYPE_CHECKING:
    from app.db.models import ModelVersion
    from worker.ml.cards import AdapterCard
    from worker.ml.classifier import TextClassifier
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


def saved_live_head(
    ctx: RunContext, snapshot: ProjectSnapshot, base: str, load: Callable[[str], Any],
    n_labels: Callable[[Any], int],
) -> tuple[Any, str]:
    """The project's saved live head (read with ``load``) if it belongs to this encoder and has
    as many outputs (``n_labels`` of it) as the project has labels, else ``(None, why not)``."""
    from sqlalchemy import select

    from app.db.models import LiveHeadState
    from contract.errors import MLError
    from worker.ml.models import model_fingerprint

    with ctx.session() as session:
        path = session.scalar(
            select(LiveHeadState.artifact_path).where(LiveHeadState.project_id == snapshot.id)
        )
    if not path:
        return None, "no live head yet"
    try:
        head = load(path)
    except (MLError, OSError, ValueError, KeyError) as exc:
        return None, f"live head unreadable: {exc}"
    if head.extra.get("encoder_fingerprint") != model_fingerprint(base):
        return None, "the live head belongs to another encoder"
    if n_labels(head) != len(snapshot.label_names):
        return None, "the label set changed"
    return head, ""


def stored_embeddings(
    ctx: RunContext, snapshot: ProjectSnapshot, base: str, head: Any, item_ids: list[int]
) -> Any:
    """The embeddings the live refit stored for ``item_ids`` with this encoder (the saved
    ``head``'s reading settings, else the defaults), or None when it has not stored them all."""
    from contract.errors import MLError
    from worker.ml.embedding_store import EmbeddingStore, encoder_key
    from worker.ml.models import model_fingerprint
    from worker.tasks.live_refit import live_dir

    if not item_ids:
        return None
    max_length = int(head.extra["max_length"]) if head is not None else (
        ctx.settings.live_embed_max_length
    )
    windows = int(head.extra.get("windows", 1)) if head is not None else 1
    key = encoder_key(model_fingerprint(base), max_length, windows)
    directory = live_dir(ctx.settings, snapshot.id) / "embeddings" / key
    if not directory.exists():
        return None
    try:
        return EmbeddingStore(directory).load().take(item_ids)
    except (MLError, OSError, ValueError, KeyError) as exc:
        log.info("no stored embeddings for the round's labels: %s", exc)
        return None


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


def write_version(
    ctx: RunContext, project_id: int, classifier: TextClassifier, card: AdapterCard,
    extra: Callable[[Path], None] | None = None,
) -> Path:
    """Write the round's artifact (and ``extra`` files) atomically into the next version's
    directory; return it."""
    from worker.ml.artifacts import save_artifact

    ctx.reporter.report(phase="save", step=0, total=1, message="writing the model version")
    with ctx.session() as session:
        number = next_version_number(session, project_id)
    parent = versions_dir(ctx.settings.artifacts, project_id)
    sweep_temporary(parent, older_than_seconds=TMP_SWEEP_SECONDS)
    final = parent / version_dir_name(number, ctx.claim.run_id, ctx.claim.attempt)

    def write(tmp: Path) -> None:
        save_artifact(classifier, tmp, card=card)
        if extra is not None:
            extra(tmp)

    write_directory_atomically(final, write)
    return final


def trained_outcome(
    ctx: RunContext, started: float, write: Callable[[], Path],
    publisher: Callable[[Path], RoundPublisher], message: str, metrics: dict[str, Any],
) -> Outcome:
    """After training: honour a cancel, write the version, and hand the run its outcome (the
    publisher runs in the run's final transaction; its cleanup after commit)."""
    from worker.ml.progress import check_cancelled

    train_seconds = time.perf_counter() - started
    check_cancelled(ctx.reporter, "save")
    final = write()
    timings = {
        "train_seconds": round(train_seconds, 3),
        "total_seconds": round(time.perf_counter() - started, 3),
    }
    publish = publisher(final)
    return Outcome(message, publish=publish, metrics=metrics, timings=timings,
                   after_commit=publish.cleanup)


class RoundPublisher:
    """Writes a round's results in the run's final transaction: the version row (unless another
    run already published this data version), the current pointer, the hand-off
    (:meth:`hand_off`), the round metric (:meth:`round_metric`) and the stop rules."""

    def __init__(self, ctx: RunContext, project_id: int, final: Path, force: bool, *,
                 adapter_kind: str, labels_used: int, metrics: dict[str, Any]) -> None:
        self.ctx = ctx
        self.project_id = project_id
        self.final = final
        self.force = force
        self.adapter_kind = adapter_kind
        self.labels_used = labels_used
        self.metrics = metrics
        self.orphan = True

    def __call__(self, session: Session, run: TrainingRun) -> int | None:
        project_id = self.project_id
        data_version = self.ctx.claim.data_version
        if not self.force and find_by_data_version(session, project_id, data_version):
            run.message = "another run already published this data version"
            return None  # the directory is removed after commit
        version = register_version(
            session,
            project_id,
            version=next_version_number(session, project_id),
            run_id=run.id,
            data_version=data_version,
            artifact_path=relative_artifact_path(self.final, self.ctx.settings),
            sha256=tree_sha256(self.final),
            adapter_kind=self.adapter_kind,
            labels_used=self.labels_used,
            metrics=self.metrics,
        )
        switch_current(session, project_id, version.id, settings=self.ctx.settings)
        self.hand_off(session, version)
        project = session.get(Project, project_id)
        assert project is not None
        metric = self.round_metric(version.id, run.id)
        session.add(metric)
        session.flush()
        evaluate_round(session, project, metric)
        self.orphan = False
        pause_point("promotion_commit")
        return version.id

    def hand_off(self, session: Session, version: ModelVersion) -> None:
        """What the new current version sets off (a queue rebuild, a live refit)."""
        raise NotImplementedError

    def round_metric(self, version_id: int, run_id: int) -> RoundMetric:
        raise NotImplementedError

    def cleanup(self) -> None:
        """After commit: a directory no row points at (lost the dedupe race) is removed."""
        if self.orphan:
            shutil.rmtree(self.final, ignore_errors=True)
