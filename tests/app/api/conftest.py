"""Fixtures for the REST API tests (see ``support.py`` for the helpers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from app.config import Settings
from tests.app.api.support import InProcessInference


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT on disk (imports torch only for the tests that ask for it)."""
    import torch

    from tests.worker.ml.tiny import make_tiny_bert

    torch.set_num_threads(1)
    return make_tiny_bert(tmp_path_factory.mktemp("api-tiny-bert"))


@pytest.fixture()
def inference(app: FastAPI, settings: Settings) -> Iterator[InProcessInference]:
    """Predictions run the real task body in this process (the app is shared: undone after)."""
    client = InProcessInference(settings)
    app.state.inference_client = client
    try:
        yield client
    finally:
        del app.state.inference_client
