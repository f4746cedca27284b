"""Crash-safe artifact directories: write to a temporary directory, fsync, rename into place.

``os.rename`` of a directory is atomic on POSIX file systems, and fsyncing the files, the
directory and its parent makes the result durable before the database ever points at it. A crash
before the rename leaves a ``.tmp-*`` directory nobody references (swept later); a crash after the
rename but before the promotion commit leaves a complete directory nobody references. Either way
the current version is untouched.

Directory names carry the run id and attempt, so a re-queued attempt never collides with what a
killed attempt left behind.

Layout under the artifact root::

    projects/<project_id>/versions/v0003-run12-a1/   model versions (one per successful round)
    projects/<project_id>/tapt/run-7/                TAPT output (resumable checkpoints inside)
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from worker.tasks.pause_points import pause_point

TMP_PREFIX = ".tmp-"


def versions_dir(root: Path, project_id: int) -> Path:
    return root / "projects" / str(project_id) / "versions"


def tapt_dir(root: Path, project_id: int, run_id: int) -> Path:
    return root / "projects" / str(project_id) / "tapt" / f"run-{run_id}"


def version_dir_name(version: int, run_id: int, attempt: int) -> str:
    return f"v{version:04d}-run{run_id}-a{attempt}"


def write_directory_atomically(final: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp_dir)``, make it durable, and rename it to ``final``.

    Refuses to replace an existing ``final``: version directories are immutable once in place.
    """
    parent = final.parent
    parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        raise FileExistsError(f"{final} already exists; artifact directories are never replaced")
    tmp = parent / f"{TMP_PREFIX}{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        write(tmp)
        fsync_tree(tmp)
        pause_point("promotion")
        os.rename(tmp, final)
        fsync_directory(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def fsync_tree(root: Path) -> None:
    """fsync every file, then every directory bottom-up, so the whole tree is on disk."""
    directories: list[Path] = []
    for current, _dirnames, filenames in os.walk(root):
        directories.append(Path(current))
        for name in filenames:
            fd = os.open(Path(current) / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for directory in reversed(directories):
        fsync_directory(directory)


def fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tree_sha256(root: Path) -> str:
    """sha256 over relative file names and contents, in sorted order (identifies an artifact)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def sweep_temporary(parent: Path, *, older_than_seconds: float) -> list[Path]:
    """Remove ``.tmp-*`` leftovers of killed writers (only old ones: a live writer may be busy)."""
    if not parent.is_dir():
        return []
    cutoff = time.time() - older_than_seconds
    removed = []
    for path in parent.iterdir():
        if path.name.startswith(TMP_PREFIX) and path.stat().st_mtime < cutoff:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed
