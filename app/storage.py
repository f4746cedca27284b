"""The artifact store as a file system named by URL (``TAPESTRY_ARTIFACT_URL``), through fsspec.

Everything that lists, measures or deletes artifacts (the sweep, retention, disk use on the admin
page) goes through :class:`ArtifactStore`, whose paths are relative to the store's root
(``projects/3/versions/v0002-run7-a1``, as model versions record them). The default URL is the
local artifact directory (``file://<artifact_dir>``); fsspec maps another scheme to its file system.

Writing and loading artifacts (training, ``/predict``, downloads) still needs them as local files:
version directories are made durable with a POSIX rename (``worker.tasks.artifact_store``) and
torch loads from paths. So today the URL must name a directory every host mounts (a shared
volume); ``app.config.check_artifact_url`` refuses other schemes with one clear line rather
than half working.
"""

from __future__ import annotations

import contextlib
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
from fsspec.core import url_to_fs


@dataclass(frozen=True)
class Entry:
    name: str
    is_dir: bool
    mtime: float | None  # seconds since the epoch, when the file system knows it


class ArtifactStore:
    """A small interface over one fsspec file system rooted at the artifact URL."""

    def __init__(self, url: str) -> None:
        fs, root = url_to_fs(url)
        self.url = url
        self.fs: fsspec.AbstractFileSystem = fs
        self.root = str(root).rstrip("/")

    @classmethod
    def local(cls, directory: Path) -> ArtifactStore:
        return cls(directory.resolve().as_uri())

    def path(self, relative: str) -> str:
        clean = posixpath.normpath(relative.strip("/")) if relative.strip("/") else ""
        if clean.startswith(".."):
            raise ValueError(f"{relative!r} is outside the artifact store")
        return f"{self.root}/{clean}" if clean and clean != "." else self.root

    def exists(self, relative: str) -> bool:
        return bool(self.fs.exists(self.path(relative)))

    def list_dir(self, relative: str) -> list[Entry]:
        """The entries directly under ``relative`` (empty when it does not exist)."""
        target = self.path(relative)
        try:
            listing: list[dict[str, Any]] = self.fs.ls(target, detail=True)
        except FileNotFoundError:
            return []
        entries = []
        for info in listing:
            name = posixpath.basename(str(info["name"]).rstrip("/"))
            entries.append(Entry(name, info.get("type") == "directory", _mtime(info)))
        return sorted(entries, key=lambda e: e.name)

    def size(self, relative: str) -> int:
        """Bytes under ``relative`` (a file or a whole tree); 0 when it does not exist."""
        target = self.path(relative)
        if not self.fs.exists(target):
            return 0
        return int(self.fs.du(target, total=True, withdirs=False))

    def remove(self, relative: str) -> None:
        """Delete a file or a whole tree; a path already gone is not an error (sweeps race)."""
        target = self.path(relative)
        if target == self.root:
            raise ValueError("refusing to remove the artifact store's root")
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(target, recursive=True)


def _mtime(info: dict[str, Any]) -> float | None:
    value = info.get("mtime", info.get("LastModified", info.get("updated")))
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    timestamp = getattr(value, "timestamp", None)
    return float(timestamp()) if callable(timestamp) else None
