"""ALPS surprisal embeddings (Yuan et al., 2020) for cold-start acquisition.

For each text, a deterministic 15 % of its token positions is chosen (seeded by the text itself,
so the result does not depend on batch composition or order). ``mode="alps"`` (the paper): the
text is passed *unmasked* and the MLM cross-entropy of the true token at the chosen positions forms
the vector, zeros elsewhere. ``mode="masked"``: the chosen tokens are replaced by [MASK] and the
cross-entropy is taken at *all* real positions. Either way the vector is padded/truncated to
``max_length`` and L2-normalised, so that k-means over it groups texts the model finds surprising
in similar places.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from contract.errors import ConfigError
from worker.ml.batching import collate, encode, sorted_batches
from worker.ml.masking import special_mask
from worker.ml.mlm_loss import token_losses
from worker.ml.models import load_masked_lm, load_tokenizer, resolve_model_path
from worker.ml.runtime import make_precision, resolve_device

MASK_FRACTION = 0.15


def _text_generator(text: str, seed: int) -> torch.Generator:
    digest = hashlib.sha256(f"{seed}\x00{text}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


def _choose(maskable_row: torch.Tensor, text: str, seed: int) -> torch.Tensor:
    candidates = torch.nonzero(maskable_row).flatten()
    chosen = torch.zeros_like(maskable_row)
    if len(candidates):
        k = max(1, round(len(candidates) * MASK_FRACTION))
        order = torch.randperm(len(candidates), generator=_text_generator(text, seed))
        chosen[candidates[order[:k]]] = True
    return chosen


def mlm_surprisal_embeddings(
    model_dir: str | Path,
    texts: Sequence[str],
    *,
    max_length: int = 128,
    seed: int = 0,
    batch_size: int = 32,
    mode: Literal["alps", "masked"] = "alps",
    device: str = "auto",
) -> np.ndarray:
    """(n, max_length) float32 L2-normalised per-token MLM losses (see the module docstring)."""
    if mode not in ("alps", "masked"):
        raise ConfigError(f"mode={mode!r}; choose 'alps' or 'masked'")
    path = resolve_model_path(str(model_dir))
    tokenizer = load_tokenizer(path)
    model, new_head = load_masked_lm(path)
    if new_head:
        warnings.warn(
            f"{path} has no trained MLM head; surprisal from a random head is noise — run TAPT "
            "first and pass its output directory",
            stacklevel=2,
        )
    precision = make_precision(resolve_device(device), "auto")
    model.to(precision.device).eval()  # type: ignore[arg-type]
    token_ids = encode(tokenizer, texts, max_length)
    out = np.zeros((len(texts), max_length), dtype=np.float32)
    pad_id = int(tokenizer.pad_token_id)  # type: ignore[arg-type]
    with torch.inference_mode(), precision.autocast():
        for indices in sorted_batches([len(t) for t in token_ids], batch_size):
            batch = collate(token_ids, indices, pad_id)
            maskable = batch.attention_mask.bool() & ~special_mask(tokenizer, batch.input_ids)
            chosen = torch.stack(
                [_choose(maskable[row], texts[i], seed) for row, i in enumerate(indices)]
            )
            inputs = batch.input_ids.clone()
            positions = chosen
            if mode == "masked":
                inputs[chosen] = int(tokenizer.mask_token_id)  # type: ignore[arg-type]
                positions = maskable
            losses = token_losses(
                model,
                inputs.to(precision.device),
                batch.attention_mask.to(precision.device),
                batch.input_ids.to(precision.device),
                positions.to(precision.device),
            )
            width = losses.shape[1]
            out[indices, :width] = losses.cpu().numpy()
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms > 0, norms, 1.0)
