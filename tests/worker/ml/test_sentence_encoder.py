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


def test_windows_read_a_long_text_in_consecutive_windows_and_one_window_is_the_plain_vector(
    tiny_bert: Path,
) -> None:
    from worker.ml.batching import encode, encode_windows
    from worker.ml.models import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_bert))
    texts = ["goal team match " * 30, "short one", "striker " * 40 + "final words here"]
    windows = encode_windows(tokenizer, texts, 16, 8)
    plain = encode(tokenizer, texts, 16)
    body = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    for per_text, first, ids in zip(windows, plain, body, strict=True):
        assert per_text[0] == first  # window 1 is what the encoder always read
        assert all(len(w) <= 16 for w in per_text)
        inner = [t for w in per_text for t in w[1:-1]]  # [CLS] ... [SEP] around each window
        assert inner == ids[: 14 * 8]  # consecutive, no overlap, no gap, capped at 8 windows
    assert [len(w) for w in windows] == [7, 1, 4]

    one = SentenceEncoder(str(tiny_bert), max_length=16)
    many = SentenceEncoder(str(tiny_bert), max_length=16, max_windows=8)
    split = many.embed_windows(texts)
    assert split.windows_per_text().tolist() == [7, 1, 4]
    np.testing.assert_allclose(split.pooled(1), one.embed(texts), atol=1e-5)
    pooled = many.embed(texts)
    np.testing.assert_allclose(np.linalg.norm(pooled, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(pooled[1], one.embed(texts)[1], atol=1e-5)  # short: unchanged
    assert not np.allclose(pooled[0], one.embed(texts)[0], atol=1e-3)  # long: reads more
    # the token-weighted mean of the windows' unit vectors, normalised
    rows = split.owner == 2
    mean = (split.vectors[rows] * split.tokens[rows, None]).sum(0)
    np.testing.assert_allclose(pooled[2], mean / np.linalg.norm(mean), atol=1e-5)
    with pytest.raises(ConfigError, match="max_windows"):
        SentenceEncoder(str(tiny_bert), max_windows=0)


def test_windows_are_chosen_from_the_length_distribution() -> None:
    from worker.ml.sentence_encoder import choose_windows

    assert choose_windows([20, 30, 40, 60] * 10) == 1  # short texts: no extra cost
    assert choose_windows([100] * 5 + [200] * 15) == 2  # three in four fit 2 windows of 128
    assert choose_windows([300] * 20) == 3
    assert choose_windows([5000] * 20) == 4  # capped
    assert choose_windows([]) == 1
    assert choose_windows([300] * 20, max_length=512) == 1
