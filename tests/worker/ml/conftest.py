"""Fixtures for the ML core tests: a tiny BERT on disk and a learnable toy corpus."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.worker.ml.tiny import LABEL_NAMES, make_corpus, make_tiny_bert

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT without an MLM head (like all-MiniLM-L6-v2), saved once per session."""
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def corpus() -> tuple[list[str], list[int]]:
    return make_corpus(60, seed=1)


@pytest.fixture(scope="session")
def label_names() -> list[str]:
    return list(LABEL_NAMES)
