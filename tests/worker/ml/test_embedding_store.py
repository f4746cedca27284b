"""Stored embeddings: float16 memory maps keyed by item id, chunked, resumable, incremental."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from worker.ml.embedding_store import EmbeddingStore, embed_missing, encoder_key


def fake_embed(calls: list[int]):  # type: ignore[no-untyped-def]
    def embed(texts: Sequence[str]) -> np.ndarray:
        calls.append(len(texts))
        return np.array([[float(len(t)), 1.0, 0.5] for t in texts], dtype=np.float32)

    return embed


def test_embeds_in_chunks_then_only_what_is_new(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path / encoder_key("abc", 128))
    calls: list[int] = []
    ids, texts = [5, 3, 9, 1, 7], ["a", "bbb", "cc", "dddd", "e"]
    assert embed_missing(store, ids, texts, fake_embed(calls), chunk_size=2) == 5
    assert calls == [2, 2, 1]
    loaded = store.load()
    assert isinstance(loaded.vectors, np.memmap) and loaded.vectors.dtype == np.float16
    assert loaded.ids.tolist() == [1, 3, 5, 7, 9]
    np.testing.assert_array_equal(loaded.take([3, 1])[:, 0], [3.0, 4.0])
    # a new import: only the new items are embedded
    assert embed_missing(store, [*ids, 11], [*texts, "ffffff"], fake_embed(calls)) == 1
    assert calls[-1] == 1 and store.load().take([11])[0, 0] == 6.0
    with pytest.raises(KeyError):
        store.load().take([2])


def test_an_interrupted_run_resumes_after_the_last_whole_chunk(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path / "enc")
    calls: list[int] = []
    good = fake_embed(calls)

    def dies_on_second_chunk(texts: Sequence[str]) -> np.ndarray:
        if calls:
            raise RuntimeError("worker killed")
        return good(texts)  # type: ignore[no-any-return]

    ids, texts = list(range(6)), [str(i) * (i + 1) for i in range(6)]
    with pytest.raises(RuntimeError):
        embed_missing(store, ids, texts, dies_on_second_chunk, chunk_size=2)
    assert store.missing(ids) == [2, 3, 4, 5]  # the first chunk survived whole
    assert embed_missing(store, ids, texts, good, chunk_size=2) == 4
    assert store.load().ids.tolist() == ids


def test_encoder_key_changes_with_the_encoder_and_the_length() -> None:
    assert encoder_key("a", 128) != encoder_key("b", 128) != encoder_key("a", 64)
