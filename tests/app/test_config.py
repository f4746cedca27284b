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
