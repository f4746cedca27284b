"""The frozen encoder as a sentence embedder: mean-pooled, L2-normalised last hidden states.

The same representation as :class:`worker.ml.classifier.TextClassifier` computes for its
embeddings (:func:`worker.ml.pooling.mean_pool`), from the base or the TAPT'd encoder without
any adapter. The live head is a linear model on these vectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel

from contract.errors import ConfigError
from worker.ml.batching import collate, encode, encode_windows
from worker.ml.models import load_tokenizer, model_fingerprint, resolve_model_path
from worker.ml.pooling import mean_pool
from worker.ml.runtime import resolve_device

DEFAULT_MAX_LENGTH = 128
"""Tokens per text for sentence embeddings (the embed-lr baseline's setting)."""
TOKENS_PER_BATCH = 16_384
"""Padded tokens per forward pass: 128 texts of 128 tokens, 512 of 32. The first refit of a
project embeds the whole pool; on a CPU the forward pass is all matrix products, and batches of a
fixed row count (64) leave short texts in small, overhead-bound products (measured on 2 cores,
1-layer encoder, 32 tokens: 4.9 s of CPU per 1,000 texts in rows of 64, 3.2 s with this budget;
at 128 tokens the row count barely matters)."""
MAX_ROWS_PER_BATCH = 1024
MAX_WINDOWS = 16
"""The most windows of ``max_length`` tokens a text may be read in (2,000 tokens at 128)."""


def token_budget_batches(
    lengths: list[int], tokens: int = TOKENS_PER_BATCH, max_rows: int = MAX_ROWS_PER_BATCH
) -> list[list[int]]:
    """Deterministic batches in increasing length order, each padded to its longest text and
    holding at most ``tokens`` padded tokens (at least one text) and ``max_rows`` texts."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:  # ascending: the text being added is the batch's longest
        if current and ((len(current) + 1) * max(1, lengths[i]) > tokens
                        or len(current) >= max_rows):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


@dataclass(frozen=True)
class WindowEmbeddings:
    """Every window's unit vector with its text and its count of real tokens (specials in)."""

    vectors: np.ndarray  # (windows, hidden) float32
    owner: np.ndarray  # (windows,) int64, ascending: the text each window belongs to
    tokens: np.ndarray  # (windows,) int64
    n_texts: int

    def pooled(self, max_windows: int | None = None) -> np.ndarray:
        """(n_texts, hidden) unit vectors: the token-weighted mean of each text's first
        ``max_windows`` windows (all when None), i.e. one mean over all their tokens' states
        up to the per-window normalisation. One window gives the plain embedding."""
        keep = np.ones(len(self.owner), dtype=bool)
        if max_windows is not None:
            starts = np.searchsorted(self.owner, self.owner, side="left")
            keep = (np.arange(len(self.owner)) - starts) < max_windows
        weights = self.tokens[keep].astype(np.float64)
        out = np.zeros((self.n_texts, self.vectors.shape[1]), dtype=np.float64)
        np.add.at(out, self.owner[keep], self.vectors[keep] * weights[:, None])
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return (out / np.maximum(norms, 1e-12)).astype(np.float32)

    def windows_per_text(self) -> np.ndarray:
        return np.bincount(self.owner, minlength=self.n_texts)

    def tokens_per_text(self) -> np.ndarray:
        """Tokens read per text, special tokens of every window included."""
        return np.bincount(self.owner, weights=self.tokens, minlength=self.n_texts).astype(int)


WINDOWS_QUANTILE = 0.75
MAX_AUTO_WINDOWS = 4


def choose_windows(
    token_lengths: Sequence[int] | np.ndarray, max_length: int = DEFAULT_MAX_LENGTH
) -> int:
    """How many windows of ``max_length`` tokens to read per text: enough to read three texts in
    four whole (``WINDOWS_QUANTILE`` of ``token_lengths``, each text's length in tokens), at most
    ``MAX_AUTO_WINDOWS``. Short texts (tweets, reviews, subject lines) get 1: no extra cost."""
    lengths = np.asarray(token_lengths, dtype=np.float64)
    if lengths.size == 0:
        return 1
    body = max(1, max_length - 2)
    typical = float(np.quantile(lengths, WINDOWS_QUANTILE))
    return int(min(MAX_AUTO_WINDOWS, max(1, np.ceil((typical - 2) / body))))


class SentenceEncoder:
    def __init__(
        self,
        model: str | Path,
        *,
        max_length: int = DEFAULT_MAX_LENGTH,
        max_windows: int = 1,
        device: str = "auto",
        tokens_per_batch: int = TOKENS_PER_BATCH,
    ) -> None:
        if max_length < 8:
            raise ConfigError(f"max_length must be >= 8 tokens, got {max_length}")
        if not 1 <= max_windows <= MAX_WINDOWS:
            raise ConfigError(f"max_windows must be 1..{MAX_WINDOWS}, got {max_windows}")
        self.max_windows = max_windows
        self.path = resolve_model_path(model)
        self.max_length = max_length
        if tokens_per_batch < max_length:
            raise ConfigError(
                f"tokens_per_batch={tokens_per_batch} is below max_length={max_length}"
            )
        self.tokens_per_batch = tokens_per_batch
        self.device = resolve_device(device)
        self.tokenizer = load_tokenizer(self.path)
        self.model = AutoModel.from_pretrained(self.path, dtype=torch.float32).to(self.device)
        self.model.eval()
        self._fingerprint: str | None = None

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = model_fingerprint(self.path)
        return self._fingerprint

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(n, hidden) float32, each row of unit length: the first ``max_length`` tokens, or with
        ``max_windows`` > 1 the token-weighted mean over up to that many consecutive windows."""
        if self.max_windows > 1:
            return self.embed_windows(texts).pooled()
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        token_ids = encode(self.tokenizer, texts, self.max_length)
        pad_id = int(self.tokenizer.pad_token_id)  # type: ignore[arg-type]
        with torch.inference_mode():
            for indices in token_budget_batches([len(t) for t in token_ids],
                                                self.tokens_per_batch):
                batch = collate(token_ids, indices, pad_id, None).to(self.device)
                hidden = self.model(
                    input_ids=batch.input_ids, attention_mask=batch.attention_mask
                ).last_hidden_state
                out[indices] = mean_pool(hidden, batch.attention_mask).cpu().numpy()
        return out

    def embed_windows(self, texts: Sequence[str]) -> WindowEmbeddings:
        """Each text read in up to ``max_windows`` windows of ``max_length`` tokens, one unit
        vector per window (a text that fits one window has one)."""
        windows = encode_windows(self.tokenizer, texts, self.max_length, self.max_windows)
        flat = [ids for per_text in windows for ids in per_text]
        owner = np.repeat(np.arange(len(windows)), [len(w) for w in windows]).astype(np.int64)
        vectors = np.zeros((len(flat), self.dim), dtype=np.float32)
        pad_id = int(self.tokenizer.pad_token_id)  # type: ignore[arg-type]
        with torch.inference_mode():
            for indices in token_budget_batches([len(t) for t in flat], self.tokens_per_batch):
                batch = collate(flat, indices, pad_id, None).to(self.device)
                hidden = self.model(
                    input_ids=batch.input_ids, attention_mask=batch.attention_mask
                ).last_hidden_state
                vectors[indices] = mean_pool(hidden, batch.attention_mask).cpu().numpy()
        tokens = np.array([len(ids) for ids in flat], dtype=np.int64)
        return WindowEmbeddings(vectors, owner, tokens, len(windows))
