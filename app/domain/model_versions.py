"""Model versions: history, the current-version pointer, promotion and rollback.

A version is a row plus an artifact directory that a worker wrote atomically (temporary
directory, fsync, rename) *before* the row existed. Promotion only switches
``project.current_model_version_id`` inside one transaction, so at every instant the current
version is a complete directory: a crash before the commit leaves the previous version current,
loadable and downloadable.

Statuses: ``promoted`` is the current version (at most one per project), ``retired`` was current
before, ``ready`` was written but never promoted. History is never deleted here.

Artifact paths are stored relative to the artifact root, so a shared artifact volume may be mounted
at different paths on web and worker hosts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.config import Settings, get_settings
from app.db.base import utcnow
from app.db.models import (
    TASK_MULTI_LABEL,
    VERSION_PROMOTED,
    VERSION_READY,
    VERSION_RETIRED,
    ModelVersion,
    Project,
)
from app.domain.runs import lock_project, request_queue_recompute
from app.errors import Conflict, NotFound

ARTIFACT_MARKER = "tapestry.json"
"""The metadata file every artifact directory holds (``worker.ml.artifacts.META_FILE``; the web
cannot import that module, it pulls in torch). Directories are renamed into place complete, so
the file's presence means the artifact is whole."""


class ModelVersionNotFound(NotFound):
    code = "model_version_not_found"

    def __init__(self, project_id: int, version_id: int) -> None:
        super().__init__(
            "Model version not found.",
            details={"project_id": project_id, "model_version_id": version_id},
        )


class NoPreviousVersion(Conflict):
    code = "no_previous_version"

    def __init__(self, project_id: int) -> None:
        super().__init__(
            "There is no earlier complete model version to roll back to; promote a specific "
            "version instead.",
            details={"project_id": project_id},
        )


class ArtifactMissing(Conflict):
    code = "artifact_missing"

    def __init__(self, version: ModelVersion, path: Path) -> None:
        super().__init__(
            f"Model version {version.version} cannot be promoted: its artifact is missing or "
            "incomplete (no tapestry.json).",
            details={"model_version_id": version.id, "path": str(path)},
        )


class DuplicatePromotion(Conflict):
    """The run already produced a model version (a re-delivered or re-queued attempt)."""

    code = "duplicate_promotion"


def resolve_artifact(stored_path: str, settings: Settings | None = None) -> Path:
    """The absolute directory of a stored artifact path (relative to the artifact root)."""
    path = Path(stored_path)
    if path.is_absolute():
        return path
    return (settings or get_settings()).artifacts / path


def relative_artifact_path(path: Path, settings: Settings | None = None) -> str:
    """How an artifact directory is stored: relative to the artifact root when inside it."""
    root = (settings or get_settings()).artifacts
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path.resolve())


def artifact_is_complete(version: ModelVersion, settings: Settings | None = None) -> bool:
    return (resolve_artifact(version.artifact_path, settings) / ARTIFACT_MARKER).is_file()


def list_versions(session: Session, project_id: int) -> list[ModelVersion]:
    """Every version of the project, newest first."""
    return list(
        session.scalars(
            select(ModelVersion)
            .where(ModelVersion.project_id == project_id)
            .order_by(ModelVersion.version.desc())
        )
    )


def current_version(session: Session, project_id: int) -> ModelVersion | None:
    project = session.get(Project, project_id)
    if project is None or project.current_model_version_id is None:
        return None
    return session.get(ModelVersion, project.current_model_version_id)


def get_version(session: Session, project_id: int, version_id: int) -> ModelVersion:
    version = session.get(ModelVersion, version_id)
    if version is None or version.project_id != project_id:
        raise ModelVersionNotFound(project_id, version_id)
    return version


def find_by_run(session: Session, run_id: int) -> ModelVersion | None:
    """The version a training run produced, if it got that far (idempotent re-delivery)."""
    return session.scalars(
        select(ModelVersion).where(ModelVersion.run_id == run_id).limit(1)
    ).first()


def find_by_data_version(
    session: Session, project_id: int, data_version: int
) -> ModelVersion | None:
    """The newest version trained on exactly this labelled-data version."""
    return session.scalars(
        select(ModelVersion)
        .where(ModelVersion.project_id == project_id, ModelVersion.data_version == data_version)
        .order_by(ModelVersion.version.desc())
        .limit(1)
    ).first()


def next_version_number(session: Session, project_id: int) -> int:
    latest = session.scalar(
        select(func.max(ModelVersion.version)).where(ModelVersion.project_id == project_id)
    )
    return int(latest or 0) + 1


def register_version(
    session: Session,
    project_id: int,
    *,
    version: int,
    run_id: int | None,
    data_version: int,
    artifact_path: str,
    sha256: str = "",
    adapter_kind: str = "",
    labels_used: int = 0,
    metrics: dict[str, Any] | None = None,
) -> ModelVersion:
    """Add the row of an artifact already in place (status ``ready``); the caller promotes it."""
    if run_id is not None and find_by_run(session, run_id) is not None:
        raise DuplicatePromotion(
            f"Run {run_id} already produced a model version.", details={"run_id": run_id}
        )
    row = ModelVersion(
        project_id=project_id,
        version=version,
        run_id=run_id,
        data_version=data_version,
        artifact_path=artifact_path,
        sha256=sha256,
        adapter_kind=adapter_kind,
        labels_used=labels_used,
        metrics=metrics or {},
        status=VERSION_READY,
    )
    session.add(row)
    session.flush()
    return row


def promote(
    session: Session, project_id: int, version_id: int, *, settings: Settings | None = None
) -> ModelVersion:
    """Make ``version_id`` current and rebuild the annotation queue with it (after commit).

    The two steps are spelled out here and in the retrain's publish step
    (``worker.tasks.retrain``): :func:`switch_current` and
    :func:`~app.domain.runs.request_queue_recompute`. A multi-label project's queue always comes
    from its live head, so it asks for a live refit instead, which compares the promoted adapter
    with the live head on dev (``worker.tasks.retrain_multilabel``).
    """
    version, switched = switch_current(session, project_id, version_id, settings=settings)
    if switched:
        project = session.get(Project, project_id)
        if project is not None and project.task_type == TASK_MULTI_LABEL:
            from app.domain.live_head import request_live_refit

            request_live_refit(session, project_id)
        else:
            request_queue_recompute(session, project_id,
                                    reason=f"model v{version.version} promoted")
    return version


def switch_current(
    session: Session, project_id: int, version_id: int, *, settings: Settings | None = None
) -> tuple[ModelVersion, bool]:
    """Make ``version_id`` the project's current version (one pointer switch in this transaction);
    the flag says whether the pointer moved (False: it already was current). Requests no job.

    Refuses a version whose artifact is incomplete.
    """
    project = lock_project(session, project_id)
    version = get_version(session, project_id, version_id)
    if not artifact_is_complete(version, settings):
        raise ArtifactMissing(version, resolve_artifact(version.artifact_path, settings))
    if project.current_model_version_id == version.id:
        return version, False
    previous = (
        session.get(ModelVersion, project.current_model_version_id)
        if project.current_model_version_id is not None
        else None
    )
    if previous is not None:
        previous.status = VERSION_RETIRED
    version.status = VERSION_PROMOTED
    version.promoted_at = utcnow()
    project.current_model_version_id = version.id
    session.flush()
    return version, True


def rollback(
    session: Session, project_id: int, *, settings: Settings | None = None
) -> ModelVersion:
    """Promote the newest complete version older than the current one.

    Repeated rollbacks walk back through history. Without a current version there is nothing to
    roll back from.
    """
    lock_project(session, project_id)
    current = current_version(session, project_id)
    if current is None:
        raise NoPreviousVersion(project_id)
    for candidate in session.scalars(
        select(ModelVersion)
        .where(ModelVersion.project_id == project_id, ModelVersion.version < current.version)
        .order_by(ModelVersion.version.desc())
    ):
        if artifact_is_complete(candidate, settings):
            return promote(session, project_id, candidate.id, settings=settings)
    raise NoPreviousVersion(project_id)
