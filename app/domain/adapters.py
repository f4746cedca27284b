"""Adapter distribution: find a project's current (or a pinned) artifact, zip it, read its card.

Used by the REST download and the UI's download button. The web process cannot import the ML
core (it pulls in torch), so zipping and card parsing are done here with the standard library and
PyYAML; the artifact layout is the one ``worker.ml.artifacts`` writes.

An artifact directory is immutable once renamed into place, so a zip built from it is cached
under ``<data_dir>/cache/adapter-zips/<sha256>.v<layout>.zip`` and its sha256 (computed by the
worker over the directory) is a strong ETag: the same bytes for the life of the version.

A base encoder this installation adapted (TAPT: it lives in the artifact store, nowhere else)
ships inside the zip as ``base/``, so plain transformers + peft reproduce ``/predict`` off this
server; a base from elsewhere (the packaged MiniLM, a hub id) is named in ``tapestry.json`` and the
card instead. Either way the card's ``base_model_sha256`` lets a client check its base
(:func:`base_fingerprint` says how it is computed).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import ModelVersion, Project
from app.domain.model_versions import (
    ArtifactMissing,
    artifact_is_complete,
    resolve_artifact,
)
from app.errors import Conflict, Gone, NotFound

CARD_FILE = "README.md"
META_FILE = "tapestry.json"
BASE_IN_ZIP = "base"
ZIP_LAYOUT = 2
"""Bumped when what goes into a zip changes (2: a TAPT'd base ships as ``base/``)."""
ZIP_CACHE = Path("cache") / "adapter-zips"
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # zip timestamps fixed: same directory, same bytes


class NoAdapterYet(Conflict):
    code = "no_adapter"

    def __init__(self, project_id: int) -> None:
        super().__init__(
            "This project has no trained adapter yet: label some items and let a retrain finish "
            "(or promote a model version) first.",
            details={"project_id": project_id},
        )


class VersionNumberNotFound(NotFound):
    code = "model_version_not_found"

    def __init__(self, project_id: int, version: int) -> None:
        super().__init__(
            f"Model version {version} does not exist in this project.",
            details={"project_id": project_id, "version": version},
        )


class ArtifactDeleted(Gone):
    code = "artifact_deleted"

    def __init__(self, row: ModelVersion) -> None:
        super().__init__(
            f"Model version {row.version}'s adapter was deleted by the retention policy (the "
            "newest TAPESTRY_KEEP_VERSIONS versions, pinned ones and the current one are kept); "
            "its history and metrics remain. Pin a version to keep its adapter.",
            details={"model_version_id": row.id, "version": row.version},
        )


class CardUnreadable(Conflict):
    code = "card_unreadable"


@dataclass(frozen=True)
class AdapterArtifact:
    """One model version's artifact as the web sees it."""

    project_id: int
    model_version_id: int
    version: int
    path: Path
    stored_path: str  # as recorded (relative to the artifact root): what a worker resolves
    sha256: str
    adapter_kind: str

    @property
    def etag(self) -> str:
        """A strong ETag (quoted): the artifact's content hash, else a per-version fallback."""
        return f'"{self.sha256 or f"tapestry-mv-{self.model_version_id}"}"'

    @property
    def download_name(self) -> str:
        return f"tapestry-project{self.project_id}-v{self.version}.zip"


def version_by_number(db: Session, project_id: int, version: int) -> ModelVersion:
    row = db.scalar(
        select(ModelVersion).where(
            ModelVersion.project_id == project_id, ModelVersion.version == version
        )
    )
    if row is None:
        raise VersionNumberNotFound(project_id, version)
    return row


def current_artifact(db: Session, project: Project, settings: Settings) -> AdapterArtifact:
    """The artifact of the project's current model version (409 when there is none yet)."""
    if project.current_model_version_id is None:
        raise NoAdapterYet(project.id)
    row = db.get(ModelVersion, project.current_model_version_id)
    if row is None:
        raise NoAdapterYet(project.id)
    return artifact_of(row, settings)


def pinned_artifact(
    db: Session, project_id: int, version: int, settings: Settings
) -> AdapterArtifact:
    """The artifact of model version number ``version`` (for clients that pin a version)."""
    return artifact_of(version_by_number(db, project_id, version), settings)


def artifact_of(row: ModelVersion, settings: Settings) -> AdapterArtifact:
    if row.artifact_deleted:
        raise ArtifactDeleted(row)
    path = resolve_artifact(row.artifact_path, settings)
    if not artifact_is_complete(row, settings):
        raise ArtifactMissing(row, path)
    return AdapterArtifact(
        project_id=row.project_id,
        model_version_id=row.id,
        version=row.version,
        path=path,
        stored_path=row.artifact_path,
        sha256=row.sha256,
        adapter_kind=row.adapter_kind,
    )


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 If-None-Match: weak comparison against a list of entity tags, or ``*``."""
    if not if_none_match:
        return False
    wanted = etag.removeprefix("W/")
    for candidate in if_none_match.split(","):
        tag = candidate.strip()
        if tag == "*" or tag.removeprefix("W/") == wanted:
            return True
    return False


def adapter_zip(artifact: AdapterArtifact, settings: Settings) -> Path:
    """The artifact directory as a zip (files at the archive root), built once and cached."""
    cache = settings.data_dir / ZIP_CACHE
    cache.mkdir(parents=True, exist_ok=True)
    key = artifact.sha256 or f"mv{artifact.model_version_id}"
    target = cache / f"{key}.v{ZIP_LAYOUT}.zip"
    if target.is_file():
        return target
    temp = cache / f".{key}.{uuid.uuid4().hex[:8]}.part"
    base = shipped_base(artifact, settings)
    if base is not None:
        check_base(artifact, base)
    try:
        write_zip(artifact.path, temp, base=base)
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    return target


def shipped_base(artifact: AdapterArtifact, settings: Settings) -> Path | None:
    """The base encoder to put into the zip: one adapted here (inside the artifact store).

    None for full fine-tuning (``model/`` is the whole model already) and for bases from outside
    the store, which the card names by path or hub id.
    """
    try:
        meta = json.loads((artifact.path / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    base = meta.get("base_model") if isinstance(meta, dict) else None
    if meta.get("kind") == "full" or not isinstance(base, str) or not base:
        return None
    path = Path(base)
    if not path.is_absolute():
        return None  # a hub id or a name: nothing of ours to ship
    try:
        path.resolve().relative_to(settings.artifacts.resolve())
    except ValueError:
        return None
    return path if path.is_dir() and not path.is_symlink() else None


class BaseChanged(Conflict):
    code = "base_changed"


def check_base(artifact: AdapterArtifact, base: Path) -> None:
    """Refuse to ship a base whose weights are not the ones the adapter was trained on."""
    meta = json.loads((artifact.path / META_FILE).read_text(encoding="utf-8"))
    recorded = meta.get("base_model_sha256")
    if recorded and base_fingerprint(base) != recorded:
        raise BaseChanged(
            f"The base model of version {artifact.version} at {base} no longer matches the "
            "sha256 recorded when the adapter was trained; it cannot be shipped with the adapter.",
            details={"version": artifact.version, "base_model_sha256": recorded},
        )


def base_fingerprint(directory: Path) -> str:
    """sha256 over a base's ``*.safetensors`` files in name order: each file's name, then its bytes.

    The same figure as ``base_model_sha256`` in the card (``worker.ml.models.model_fingerprint``),
    so a client can check the base it loads in five lines of standard library (docs/api.md).
    """
    digest = hashlib.sha256()
    for file in sorted(directory.glob("*.safetensors")):
        digest.update(file.name.encode())
        with file.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def write_zip(directory: Path, destination: Path, *, base: Path | None = None) -> None:
    """Zip the regular files of ``directory`` in name order with fixed timestamps.

    With ``base``, that directory's top-level files go under ``base/`` (model weights, config and
    tokenizer: what ``from_pretrained`` reads). Symbolic links are skipped: an artifact holds plain
    files only, and following a link could hand out a file from outside the artifact store.
    """
    entries = [
        (p.relative_to(directory).as_posix(), p)
        for p in sorted(directory.rglob("*"))
        if p.is_file() and not _has_link(p, directory)
    ]
    if base is not None:
        entries += [
            (f"{BASE_IN_ZIP}/{p.name}", p)
            for p in sorted(base.iterdir())
            if p.is_file() and not p.is_symlink()
        ]
    with zipfile.ZipFile(destination, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, file in entries:
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with file.open("rb") as source, archive.open(info, "w") as sink:
                while chunk := source.read(1 << 20):
                    sink.write(chunk)


def _has_link(path: Path, root: Path) -> bool:
    current = path
    while current != root:
        if current.is_symlink():
            return True
        current = current.parent
    return False


def read_card(artifact: AdapterArtifact) -> dict[str, Any]:
    """The adapter card's YAML front matter (base model + sha256, configs, labels, metrics)."""
    path = artifact.path / CARD_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        raise CardUnreadable(
            f"Model version {artifact.version} has no adapter card ({CARD_FILE}).",
            details={"version": artifact.version},
        ) from None
    return parse_front_matter(text, artifact.version)


def parse_front_matter(text: str, version: int) -> dict[str, Any]:
    problem = None
    data: Any = None
    if not text.startswith("---\n"):
        problem = "it has no YAML front matter"
    else:
        end = text.find("\n---", 4)
        if end < 0:
            problem = "its front matter is not closed by '---'"
        else:
            try:
                data = yaml.safe_load(text[4:end])
            except yaml.YAMLError as exc:
                problem = f"its front matter is not YAML ({exc.__class__.__name__})"
    if problem is None and not isinstance(data, dict):
        problem = "its front matter is not a mapping"
    if problem is not None:
        raise CardUnreadable(
            f"The adapter card of model version {version} cannot be read: {problem}.",
            details={"version": version},
        )
    return {str(key): value for key, value in data.items()}

