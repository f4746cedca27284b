"""Fixtures for the task tests: a file database, a tiny BERT, a seeded project, recorded jobs.

Task bodies open their own sessions on ``settings.database_url`` (as in a real worker), so these
tests use a SQLite file per test instead of the shared rolled-back session.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from app.jobs import Job, recording_jobs
from tests.app.domain.runs_support import Db, file_db
from tests.worker.ml.tiny import make_tiny_bert
from tests.worker.tasks.seed import Seeded, seed_project

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(1)

__all__ = ["file_db"]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture()
def sent() -> Iterator[list[Job]]:
    with recording_jobs() as jobs:
        yield jobs


@pytest.fixture()
def seeded(file_db: Db, tiny_model: Path) -> Seeded:
    with file_db.session() as session:
        seeded = seed_project(session, base_model=str(tiny_model))
        session.commit()
    return seeded
