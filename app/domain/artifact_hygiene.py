"""Artifact hygiene: sweep what no run or version needs, keep the last N versions, measure disk use.

The sweep (``tapestry artifacts sweep``, the Celery task ``maintenance.sweep_artifacts``, and a loop
in every worker every ``TAPESTRY_ARTIFACT_SWEEP_SECONDS``) walks ``projects/<id>/`` in the
artifact store (:class:`app.storage.ArtifactStore`) and removes:

- version directories no model version row points at, written by a run that is no longer queued
  or running (a failed or cancelled run, or an attempt killed between its rename and its commit);
- ``.tmp-*`` directories (a writer killed before its rename) of runs that are no longer active,
  and any older than ``TAPESTRY_ARTIFACT_TMP_GRACE_SECONDS`` whose run cannot be told;
- TAPT directories of failed or cancelled TAPT runs (unless the project's base points into one);
- retention: beyond the newest ``TAPESTRY_KEEP_VERSIONS`` versions of a project, the artifacts of
  versions that are neither pinned nor current. Their rows stay (``artifact_deleted``): history and
  metrics remain, and a download answers 410 Gone.

Never removed: the current version, a pinned version, a version among the newest N, anything of a
queued or running run, a finished version directory whose run this database does not know, and
a directory under ``projects/`` that is no project of this database (reported as unclaimed: a
host configured with the wrong database must not wipe the store). Directories are listed after
the database is read, so a directory a run creates meanwhile belongs to a run this pass did not
see, and is left alone.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import (
    RUN_ACTIVE,
    RUN_CANCELLED,
    RUN_FAILED,
    ModelVersion,
    Project,
    TrainingRun,
)
from app.storage import ArtifactStore

TMP_PREFIX = ".tmp-"  # worker.tasks.artifact_store.TMP_PREFIX (the web cannot import worker code)
TMP_INFIX = ".tmp-"  # worker.ml.artifacts writes ".<name>.tmp-<hex>" inside an artifact's parent
RUN_IN_NAME = re.compile(r"-run(\d+)-a\d+")
TAPT_NAME = re.compile(r"^run-(\d+)$")
ENDED_BADLY = (RUN_FAILED, RUN_CANCELLED)

Remove = Callable[[str], None]
IsOld = Callable[[float | None], bool]


@dataclass
class SweepReport:
    dry_run: bool = False
    removed: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    versions_deleted: list[tuple[int, int]] = field(default_factory=list)  # (project, version)
    unclaimed: list[str] = field(default_factory=list)  # project directories of no project here

    def summary(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        versions = ", ".join(f"project {p} v{v}" for p, v in self.versions_deleted) or "none"
        return (
            f"artifact sweep {verb} {len(self.removed)} path(s), "
            f"{self.freed_bytes / 1e6:.1f} MB; version artifacts past retention: {versions}"
            + (f"; left alone, no such project here: {', '.join(self.unclaimed)}"
               if self.unclaimed else "")
        )


def store_for(settings: Settings) -> ArtifactStore:
    return ArtifactStore.local(settings.artifacts)


def sweep_artifacts(
    session: Session,
    settings: Settings,
    *,
    store: ArtifactStore | None = None,
    dry_run: bool = False,
    now: float | None = None,
) -> SweepReport:
    """One pass over every project's artifacts; the caller commits (``artifact_deleted`` marks)."""
    store = store or store_for(settings)
    now = time.time() if now is None else now
    report = SweepReport(dry_run=dry_run)
    runs: dict[int, str] = {
        run_id: status
        for run_id, status in session.execute(select(TrainingRun.id, TrainingRun.status))
    }
    projects = {p.id: p for p in session.scalars(select(Project))}
    versions = list(session.scalars(select(ModelVersion).order_by(ModelVersion.version.desc())))

    def remove(path: str) -> None:
        report.freed_bytes += store.size(path)
        report.removed.append(path)
        if not dry_run:
            store.remove(path)

    def old(mtime: float | None) -> bool:
        return mtime is not None and now - mtime >= settings.artifact_tmp_grace_seconds

    for entry in store.list_dir("projects"):
        if not entry.is_dir:
            continue
        if not entry.name.isdigit() or int(entry.name) not in projects:
            # Not a project of this database. Left alone on purpose: a host pointed at the wrong
            # database must not wipe another installation's artifacts. Reported for an admin.
            report.unclaimed.append(f"projects/{entry.name}")
            continue
        project = projects[int(entry.name)]
        own = [v for v in versions if v.project_id == project.id]
        _sweep_versions(store, project, own, runs, remove, old)
        _sweep_tapt(store, project, runs, remove, old)
        _apply_retention(store, project, own, settings, report, dry_run)
    return report


def _run_of(name: str) -> int | None:
    match = RUN_IN_NAME.search(name)
    return int(match.group(1)) if match else None


def _sweep_versions(
    store: ArtifactStore,
    project: Project,
    own: list[ModelVersion],
    runs: dict[int, str],
    remove: Remove,
    old: IsOld,
) -> None:
    parent = f"projects/{project.id}/versions"
    referenced = {v.artifact_path.rstrip("/") for v in own}
    for entry in store.list_dir(parent):
        path = f"{parent}/{entry.name}"
        if path in referenced:
            continue
        run_id = _run_of(entry.name)
        status = runs.get(run_id) if run_id is not None else None
        if status in RUN_ACTIVE:
            continue  # its writer may be at work, or about to commit the row
        temporary = entry.name.startswith(TMP_PREFIX) or TMP_INFIX in entry.name
        if status is not None or (temporary and old(entry.mtime)):
            # a finished run's leftover (failed, cancelled, or a killed attempt's directory);
            # a temporary of no known run once it is old (a finished one of no known run stays)
            remove(path)


def _sweep_tapt(
    store: ArtifactStore, project: Project, runs: dict[int, str], remove: Remove, old: IsOld
) -> None:
    parent = f"projects/{project.id}/tapt"
    in_use = (project.tapt_model_path or "").rstrip("/")
    for entry in store.list_dir(parent):
        path = f"{parent}/{entry.name}"
        if in_use == path or in_use.startswith(path + "/"):
            continue
        match = TAPT_NAME.match(entry.name)
        if match is None:
            if TMP_INFIX in entry.name and old(entry.mtime):
                remove(path)
            continue
        if runs.get(int(match.group(1))) in ENDED_BADLY:
            remove(path)


def _apply_retention(
    store: ArtifactStore,
    project: Project,
    own: list[ModelVersion],
    settings: Settings, report: SweepReport, dry_run: bool
) -> None:
    keep_n = settings.keep_versions
    if keep_n <= 0:
        return
    newest = {v.id for v in own[:keep_n]}  # ``own`` is newest first
    for version in own:
        if version.artifact_deleted or version.id in newest or version.pinned:
            continue
        if version.id == project.current_model_version_id:
            continue
        path = version.artifact_path.rstrip("/")
        if not path.startswith(f"projects/{project.id}/"):
            continue  # recorded outside the store (an absolute path): not ours to delete
        report.freed_bytes += store.size(path)
        report.removed.append(path)
        report.versions_deleted.append((project.id, version.version))
        if not dry_run:
            store.remove(path)
            version.artifact_deleted = True


def set_pinned(session: Session, version: ModelVersion, pinned: bool) -> ModelVersion:
    """Pin (keep whatever retention says) or unpin a version; a deleted artifact stays deleted."""
    version.pinned = pinned
    session.flush()
    return version


@dataclass(frozen=True)
class ProjectDiskUse:
    project_id: int
    total_bytes: int
    versions_bytes: int
    tapt_bytes: int


def disk_use(project_ids: list[int], settings: Settings) -> dict[int, ProjectDiskUse]:
    """Bytes each project's artifacts take (versions, TAPT, anything else under its directory)."""
    store = store_for(settings)
    use = {}
    for project_id in project_ids:
        base = f"projects/{project_id}"
        use[project_id] = ProjectDiskUse(
            project_id=project_id,
            total_bytes=store.size(base),
            versions_bytes=store.size(f"{base}/versions"),
            tapt_bytes=store.size(f"{base}/tapt"),
        )
    return use


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"
