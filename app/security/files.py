"""Data files readable by the service account only: files 0600, directories 0700.

The data directory holds the SQLite database (password and token hashes), the secret key, the
embedded broker's database and model artifacts. :func:`restrict_new_files` sets the process umask
so that everything the process creates afterwards (SQLite's own -wal/-shm/-journal files, the
broker's tables, artifacts) is private from the start; :func:`tighten` fixes what an older version
left world-readable.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_UMASK = 0o077
DATA_FILE_GLOBS = ("*.sqlite", "*.sqlite-*", "secret_key")


def restrict_new_files() -> None:
    """New files 0600 and directories 0700 in this process (idempotent)."""
    os.umask(PRIVATE_UMASK)


def private_dir(path: Path) -> None:
    """Create ``path`` (0700) if missing; make an existing one of ours 0700."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    _chmod_if_ours(path, 0o700)


def tighten(data_dir: Path) -> None:
    """Make the data directory's database, broker and key files 0600 (those of older installs)."""
    for pattern in DATA_FILE_GLOBS:
        for path in data_dir.glob(pattern):
            if path.is_file() and not path.is_symlink():
                _chmod_if_ours(path, 0o600)


def _chmod_if_ours(path: Path, mode: int) -> None:
    info = path.stat()
    if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) != mode:
        path.chmod(mode)
