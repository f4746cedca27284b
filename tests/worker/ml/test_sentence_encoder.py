"""Sentence embeddings in token-budget batches: the batching covers every text once within the
budget, and a text's vector does not depend on the batch it was embedded in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from contract.errors import ConfigError
from worker.ml.sentence_encoder import SentenceEncoder, token_budget_batches


def test_token_budget_batches_cover_every_text_once_within_the_budget() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 130, size=3000).tolist()
    batches = token_budget_batches(lengths, tokens=4096, max_rows=100)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(3000))
    assert [lengths[i] for i in flat] == sorted(lengths)  # ascending length order
    for batch in batches:
        assert len(batch) <= 100
        assert len(batch) * max(lengths[i] for i in batch) <= 4096
    # short texts share big batches, long ones get fewer rows
    short = token_budget_batches([8] * 1000, tokens=4096)
    long = token_budget_batches([128] * 1000, tokens=4096)
    assert [len(b) for b in short][:1] == [512] and [len(b) for b in long][:1] == [32]
    assert token_budget_batches([500, 3], tokens=64) == [[1], [0]]  # one over-long text alone


def test_a_vector_does_not_depend_on_its_batch(tiny_bert: Path) -> None:
    texts = [f"word{i} " * (1 + i % 17) + "goal team match" for i in range(90)]
    wide = SentenceEncoder(str(tiny_bert), max_length=32).embed(texts)
    narrow = SentenceEncoder(str(tiny_bert), max_length=32, tokens_per_batch=32).embed(texts)
    np.testing.assert_allclose(wide, narrow, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(wide, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ConfigError, match="tokens_per_batch"):
        SentenceEncoder(str(tiny_bert), max_length=64, tokens_per_batch=32)
