"""Masked-LM inputs: sequence packing, and corruption of 15 % of tokens (optionally whole words).

Own implementation (rather than a data collator) so masking is reproducible from a seed per
micro-batch, which is what lets TAPT resume mid-run with identical batches, and so the held-out
set is masked once and compared fairly across evaluations.

Packing (:func:`pack_blocks`, the "group_texts" of Hugging Face's ``run_mlm``) concatenates whole
tokenised texts, each still framed by its own special tokens (``[CLS] a [SEP] [CLS] b [SEP] ...``),
and cuts the stream into blocks of exactly ``block_size`` tokens: no position is padding, so no
compute is spent on it. Special tokens never become prediction targets (:func:`special_mask`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

IGNORE = -100


def encode_with_words(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int | None
) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids and word ids (-1 for special tokens) per text, unpadded.

    Truncated to ``max_length``; whole texts when it is ``None`` (for packing, where a long text
    simply spans several blocks).
    """
    if not texts:
        return [], []
    encoded = tokenizer(
        list(texts),
        truncation=max_length is not None,
        max_length=max_length,
        padding=False,
        return_attention_mask=False,
        return_token_type_ids=False,
        verbose=max_length is not None,  # whole texts may exceed the model's length on purpose
    )
    ids = [list(row) for row in encoded["input_ids"]]
    words = [[-1 if w is None else int(w) for w in encoded.word_ids(i)] for i in range(len(ids))]
    return ids, words


def pack_blocks(
    ids: Sequence[Sequence[int] | np.ndarray],
    words: Sequence[Sequence[int] | np.ndarray],
    order: Sequence[int],
    block_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Texts ``order`` concatenated and cut into rows of exactly ``block_size`` tokens.

    Returns (input ids, word ids), both int64 of shape (n_blocks, block_size). Every token of
    the selected texts lands in exactly one block, in order, except the final remainder shorter
    than a block, which is dropped (a different one each epoch when ``order`` is reshuffled).
    When the texts hold fewer than ``block_size`` tokens in all, the single short block is
    returned as is (shape (1, n_tokens)); with no tokens, (0, block_size).

    Word ids stay -1 on special tokens and are renumbered per block from 0, distinct across
    texts, so whole-word masking never merges words of neighbouring texts.
    """
    if block_size <= 0:
        raise ValueError(f"block_size must be positive, got {block_size}")
    chosen = [i for i in order if len(ids[i])]
    if not chosen:
        empty = np.zeros((0, block_size), dtype=np.int64)
        return empty, empty.copy()
    stream = np.concatenate([np.asarray(ids[i], dtype=np.int64) for i in chosen])
    word_parts = []
    offset = 0
    for i in chosen:
        row = np.asarray(words[i], dtype=np.int64)
        if len(row) != len(ids[i]):
            raise ValueError("token ids and word ids differ in length")
        word_parts.append(np.where(row >= 0, row + offset, -1))
        offset += int(row.max()) + 1 if len(row) and row.max() >= 0 else 0
    word_stream = np.concatenate(word_parts)
    n_blocks = len(stream) // block_size
    width = block_size if n_blocks else len(stream)
    n_blocks = max(n_blocks, 1)
    blocks = stream[: n_blocks * width].reshape(n_blocks, width)
    block_words = word_stream[: n_blocks * width].reshape(n_blocks, width)
    real = block_words >= 0
    first = np.where(real, block_words, np.iinfo(np.int64).max).min(axis=1, keepdims=True)
    block_words = np.where(real, block_words - np.where(real.any(1, keepdims=True), first, 0), -1)
    return blocks, block_words


def special_mask(tokenizer: PreTrainedTokenizerBase, input_ids: torch.Tensor) -> torch.Tensor:
    """True where a token must never be masked (special tokens, padding)."""
    specials = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=input_ids.dtype)
    return torch.isin(input_ids, specials)


def select_positions(
    maskable: torch.Tensor,
    probability: float,
    generator: torch.Generator,
    word_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Bool (B, L): positions chosen for prediction; whole words when ``word_ids`` is given.

    Every row with at least one maskable token gets at least one chosen position, so that no
    batch yields an empty loss.
    """
    if word_ids is None:
        draw = torch.rand(maskable.shape, generator=generator)
        chosen = (draw < probability) & maskable
    else:
        n_words = int(word_ids.max().item()) + 1 if word_ids.numel() else 0
        word_draw = torch.rand((maskable.shape[0], max(1, n_words)), generator=generator)
        picked = torch.gather(word_draw, 1, word_ids.clamp_min(0)) < probability
        chosen = picked & maskable & (word_ids >= 0)
    empty = (chosen.sum(dim=1) == 0) & (maskable.sum(dim=1) > 0)
    for row in torch.nonzero(empty).flatten().tolist():
        candidates = torch.nonzero(maskable[row]).flatten()
        pick = candidates[torch.randint(len(candidates), (1,), generator=generator)]
        if word_ids is None or word_ids[row, pick] < 0:
            chosen[row, pick] = True
        else:
            chosen[row] = maskable[row] & (word_ids[row] == word_ids[row, pick])
    return chosen


def corrupt(
    input_ids: torch.Tensor,
    chosen: torch.Tensor,
    mask_id: int,
    vocab_size: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply 80 % [MASK] / 10 % random token / 10 % unchanged; labels are -100 elsewhere."""
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE))
    draw = torch.rand(input_ids.shape, generator=generator)
    corrupted = input_ids.clone()
    corrupted[chosen & (draw < 0.8)] = mask_id
    random_slots = chosen & (draw >= 0.8) & (draw < 0.9)
    randoms = torch.randint(vocab_size, input_ids.shape, generator=generator)
    corrupted[random_slots] = randoms[random_slots]
    return corrupted, labels


def mask_batch(
    tokenizer: PreTrainedTokenizerBase,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    probability: float,
    generator: torch.Generator,
    vocab_size: int,
    word_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupted inputs and labels for one padded batch."""
    maskable = attention_mask.bool() & ~special_mask(tokenizer, input_ids)
    chosen = select_positions(maskable, probability, generator, word_ids)
    mask_id = tokenizer.mask_token_id
    if mask_id is None:
        raise ValueError("the tokenizer has no mask token; masked-LM training needs one")
    return corrupt(input_ids, chosen, int(mask_id), vocab_size, generator)


def pad_word_ids(
    word_ids: Sequence[Sequence[int]], indices: Sequence[int], width: int
) -> torch.Tensor:
    out = torch.full((len(indices), width), -1, dtype=torch.long)
    for row, index in enumerate(indices):
        values = word_ids[index]
        out[row, : len(values)] = torch.tensor(values, dtype=torch.long)
    return out
