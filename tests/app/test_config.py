"""Settings defaults that depend on the deployment (``app.config``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.config import Settings


@pytest.mark.parametrize(
    ("database_url", "expected"),
    [("", 1), ("postgresql+psycopg://db.example/tapestry", 2)],
)
def test_annotator_concurrency_default_follows_the_database(
    tmp_path: Path, database_url: str, expected: int
) -> None:
    settings = Settings(data_dir=tmp_path, database_url=database_url)
    assert settings.annotator_concurrency == expected


def test_annotator_concurrency_can_be_set_and_is_bounded(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path, annotator_concurrency=6).annotator_concurrency == 6
    with pytest.raises(ValidationError):
        Settings(data_dir=tmp_path, annotator_concurrency=-1)


@pytest.mark.parametrize("weak", ["a" * 40, "ab" * 20, "0123" * 10, "changeme"])
def test_low_entropy_secret_keys_are_refused(tmp_path: Path, weak: str) -> None:
    with pytest.raises(ValidationError, match="TAPESTRY_SECRET_KEY"):
        Settings(data_dir=tmp_path, secret_key=weak)


def test_random_secret_keys_are_accepted(tmp_path: Path) -> None:
    import secrets

    for key in (secrets.token_urlsafe(48), secrets.token_hex(32), secrets.token_urlsafe(24)):
        assert Settings(data_dir=tmp_path, secret_key=key).secret_key == key


def test_a_refused_secret_stops_start_up_with_one_clear_line(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "TAPESTRY_SECRET_KEY": "a" * 40, "TAPESTRY_DATA_DIR": str(tmp_path)}
    script = "from app.main import create_app; create_app()"
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "TAPESTRY_SECRET_KEY is too predictable" in lines[0]
