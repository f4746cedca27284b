"""Atomic artifact directories and the test-only pause points."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from app.domain.model_versions import ARTIFACT_MARKER
from tests.worker.tasks.waiting import wait_for
from worker.tasks.artifact_store import (
    TMP_PREFIX,
    sweep_temporary,
    tree_sha256,
    write_directory_atomically,
)
from worker.tasks.pause_points import PAUSE_AT_ENV, PAUSE_DIR_ENV, pause_point


def write_two_files(directory: Path) -> None:
    (directory / "a.json").write_text("{}")
    (directory / "sub").mkdir()
    (directory / "sub" / "b.bin").write_bytes(b"\x00\x01")


def test_directory_appears_complete_under_its_final_name(tmp_path: Path) -> None:
    final = tmp_path / "versions" / "v0001-run1-a1"
    assert write_directory_atomically(final, write_two_files) == final
    assert (final / "sub" / "b.bin").read_bytes() == b"\x00\x01"
    assert [p.name for p in final.parent.iterdir()] == [final.name]  # no temp dir left
    with pytest.raises(FileExistsError):
        write_directory_atomically(final, write_two_files)


def test_a_failing_writer_leaves_nothing_behind(tmp_path: Path) -> None:
    final = tmp_path / "versions" / "v0002-run2-a1"

    def broken(directory: Path) -> None:
        (directory / "half.bin").write_bytes(b"...")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_directory_atomically(final, broken)
    assert list(final.parent.iterdir()) == []


def test_sweep_only_removes_old_temporary_dirs(tmp_path: Path) -> None:
    old, fresh, kept = tmp_path / f"{TMP_PREFIX}x", tmp_path / f"{TMP_PREFIX}y", tmp_path / "v1"
    for path in (old, fresh, kept):
        path.mkdir()
    os.utime(old, (0, 0))
    assert sweep_temporary(tmp_path, older_than_seconds=60) == [old]
    assert fresh.exists() and kept.exists()


def test_tree_hash_depends_on_names_and_bytes(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for directory in (a, b):
        directory.mkdir()
        write_two_files(directory)
    assert tree_sha256(a) == tree_sha256(b)
    (b / "a.json").write_text("{ }")
    assert tree_sha256(a) != tree_sha256(b)


def test_marker_file_matches_the_ml_artifact_format() -> None:
    from worker.ml.artifacts import META_FILE

    assert ARTIFACT_MARKER == META_FILE


def test_pause_point_blocks_until_released(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError):
        pause_point("nowhere")
    pause_point("promotion")  # not requested: returns at once
    monkeypatch.setenv(PAUSE_AT_ENV, "promotion")
    monkeypatch.setenv(PAUSE_DIR_ENV, str(tmp_path))
    done = threading.Event()

    def paused_worker() -> None:
        pause_point("promotion")
        done.set()

    thread = threading.Thread(target=paused_worker)
    thread.start()
    wait_for(lambda: (tmp_path / "promotion.reached").exists(), "the pause", timeout=10)
    assert not done.is_set()
    (tmp_path / "promotion.release").touch()
    thread.join(timeout=10)
    assert done.is_set()
