"""Fixtures for the REST API tests (see ``support.py`` for the helpers)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT on disk (imports torch only for the tests that ask for it)."""
    import torch

    from tests.worker.ml.tiny import make_tiny_bert

    torch.set_num_threads(1)
    return make_tiny_bert(tmp_path_factory.mktemp("api-tiny-bert"))
