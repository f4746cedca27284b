"""A model version's adapter card (README.md in its artifact directory) and its zip download.

The card is YAML front matter plus a prose body written by the worker. The web shows the front
matter as a table and the body as escaped text: the card is data, so it is never turned into
HTML (no markdown renderer, no injection). ``yaml.safe_load`` only builds plain values.

The zip is built from the artifact directory as it is on disk (the directory was renamed into
place complete and never changes afterwards); symlinks are skipped so a crafted artifact cannot
make the web process read files outside it.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from app.config import Settings
from app.db.models import ModelVersion
from app.domain.model_versions import ARTIFACT_MARKER, resolve_artifact
from app.errors import Conflict

CARD_FILE = "README.md"
MAX_CARD_BYTES = 512 * 1024
MAX_TABLE_ROWS = 200


@dataclass(frozen=True)
class AdapterCardView:
    rows: tuple[tuple[str, str], ...]
    """Flattened front matter: ("adapter_config.r", "8"), ..."""
    body: str
    problem: str | None = None


def read_card(version: ModelVersion, settings: Settings) -> AdapterCardView:
    path = resolve_artifact(version.artifact_path, settings) / CARD_FILE
    if not path.is_file() or path.is_symlink():
        return AdapterCardView((), "", "This version has no adapter card (README.md).")
    if path.stat().st_size > MAX_CARD_BYTES:
        return AdapterCardView((), "", "The adapter card is too large to show.")
    return parse_card_text(path.read_text(encoding="utf-8", errors="replace"))


def parse_card_text(text: str) -> AdapterCardView:
    """Split a card into (front matter rows, body); broken front matter is reported, not raised."""
    if not text.startswith("---\n"):
        return AdapterCardView((), text, "The card has no front matter.")
    end = text.find("\n---", 4)
    if end < 0:
        return AdapterCardView((), text, "The card's front matter is not closed by '---'.")
    body = text[end + 4 :].lstrip("\n")
    try:
        data = yaml.safe_load(text[4:end])
    except yaml.YAMLError as exc:
        return AdapterCardView((), body, f"The card's front matter is not valid YAML ({exc}).")
    if not isinstance(data, dict):
        return AdapterCardView((), body, "The card's front matter is not a mapping.")
    rows = tuple(flatten(data))[:MAX_TABLE_ROWS]
    return AdapterCardView(rows, body)


def flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested mappings become dotted keys; lists of scalars are joined with commas."""
    if isinstance(value, dict):
        if not value and prefix:
            return [(prefix, "—")]
        rows: list[tuple[str, str]] = []
        for key, item in value.items():
            rows.extend(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return rows
    if isinstance(value, list):
        if all(not isinstance(v, dict | list) for v in value):
            return [(prefix, ", ".join(_scalar(v) for v in value) or "—")]
        rows = []
        for i, item in enumerate(value):
            rows.extend(flatten(item, f"{prefix}[{i}]"))
        return rows
    return [(prefix, _scalar(value))]


def _scalar(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def artifact_files(root: Path) -> list[Path]:
    """Regular files under ``root`` (no symlinks), in a stable order."""
    files = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not (Path(dirpath) / d).is_symlink())
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink():
                files.append(path)
    return files


def zip_version(version: ModelVersion, settings: Settings) -> Path:
    """Write the version's artifact directory to a temporary zip; the caller deletes it.

    Refuses an incomplete artifact (no ``tapestry.json``): a download must be loadable.
    """
    root = resolve_artifact(version.artifact_path, settings)
    if not (root / ARTIFACT_MARKER).is_file():
        raise Conflict(
            f"Model version {version.version} has no complete artifact to download.",
            details={"model_version_id": version.id},
        )
    tmp_dir = settings.data_dir / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix="adapter-", suffix=".zip", dir=tmp_dir)
    os.close(handle)
    target = Path(name)
    folder = download_name(version).removesuffix(".zip")
    try:
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in artifact_files(root):
                archive.write(path, arcname=f"{folder}/{path.relative_to(root).as_posix()}")
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target


def download_name(version: ModelVersion) -> str:
    return f"tapestry-project{version.project_id}-v{version.version}.zip"
