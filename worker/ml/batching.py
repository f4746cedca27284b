"""Tokenisation with truncation, length-bucketed batches and dynamic padding.

Sorting by length before batching means a batch is padded only to its own longest text, so short
texts never pay for long ones. Training keeps randomness by shuffling, sorting within large
windows, and shuffling the batch order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

SORT_WINDOW_BATCHES = 50


@dataclass(frozen=True)
class Batch:
    """A padded batch and the positions of its rows in the original input order."""

    indices: list[int]
    input_ids: torch.Tensor
    attention_mask: torch.Tensor

    def to(self, device: torch.device) -> Batch:
        return Batch(self.indices, self.input_ids.to(device), self.attention_mask.to(device))


def encode(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int
) -> list[list[int]]:
    """Token ids per text, with special tokens, truncated to ``max_length``, unpadded."""
    if not texts:
        return []
    encoded = tokenizer(
        list(texts),
        truncation=True,
        max_length=max_length,
        padding=False,
        return_attention_mask=False,
        return_token_type_ids=False,
    )
    return [list(ids) for ids in encoded["input_ids"]]


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Deterministic batches of indices in increasing length order (for inference)."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def shuffled_bucket_batches(
    lengths: Sequence[int], batch_size: int, rng: np.random.Generator
) -> list[list[int]]:
    """Random batches of similar-length items (for training).

    Shuffle, sort within windows of ``SORT_WINDOW_BATCHES`` batches, cut into batches, then
    shuffle the batch order: padding stays low while every epoch sees a different order.
    """
    order = rng.permutation(len(lengths)).tolist()
    window = batch_size * SORT_WINDOW_BATCHES
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches.extend(chunk[pos : pos + batch_size] for pos in range(0, len(chunk), batch_size))
    permuted = rng.permutation(len(batches)).tolist()
    return [batches[i] for i in permuted]


def collate(
    token_ids: Sequence[Sequence[int]],
    indices: Sequence[int],
    pad_id: int,
    pad_to_multiple_of: int | None = None,
) -> Batch:
    """Pad the selected rows to the longest among them (optionally to a multiple, for GPUs)."""
    rows = [token_ids[i] for i in indices]
    width = max(len(row) for row in rows)
    if pad_to_multiple_of:
        width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row_index, row in enumerate(rows):
        input_ids[row_index, : len(row)] = torch.tensor(row, dtype=torch.long)
        attention_mask[row_index, : len(row)] = 1
    return Batch(list(indices), input_ids, attention_mask)


def padding_ratio(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Fraction of padded positions over all positions for a batching (a diagnostic)."""
    padded = sum(max(lengths[i] for i in batch) * len(batch) for batch in batches)
    real = sum(lengths)
    return 0.0 if padded == 0 else 1.0 - real / padded
