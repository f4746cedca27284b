"""The frozen encoder as a sentence embedder: mean-pooled, L2-normalised last hidden states.

The same representation as :class:`worker.ml.classifier.TextClassifier` computes for its
embeddings (:func:`worker.ml.pooling.mean_pool`), from the base or the TAPT'd encoder without
any adapter. The live head is a linear model on these vectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel

from contract.errors import ConfigError
from worker.ml.batching import collate, encode
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


class SentenceEncoder:
    def __init__(
        self,
        model: str | Path,
        *,
        max_length: int = DEFAULT_MAX_LENGTH,
        device: str = "auto",
        tokens_per_batch: int = TOKENS_PER_BATCH,
    ) -> None:
        if max_length < 8:
            raise ConfigError(f"max_length must be >= 8 tokens, got {max_length}")
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
        """(n, hidden) float32, each row of unit length."""
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
