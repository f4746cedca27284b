"""Frozen sentence embeddings for the simulation's live head and ``embed-lr`` baseline.

The base encoder, the first ``max_length`` tokens, mean-pooled over the attention mask and
L2-normalised (DATA.md's ``embed-lr``). Computing them is the costly part on a CPU, so they are
cached on disk keyed by a hash of the texts, the encoder's fingerprint and ``max_length``, and
shared by every arm and seed of a run (and by later runs on the same data).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

Embedder = Callable[[Sequence[str]], np.ndarray]


def texts_hash(texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()[:20]


def encode_texts(
    texts: Sequence[str],
    base_model: str,
    *,
    max_length: int = 128,
    batch_size: int = 32,
    device: str = "auto",
    reporter: Any = None,
) -> np.ndarray:
    """(n, d) float32 unit vectors: mean pool of the encoder's last layer over real tokens;
    ``reporter`` (a ``ProgressReporter``) hears phase "score" after every batch."""
    import torch
    from transformers import AutoModel

    from worker.ml.batching import collate, encode, sorted_batches
    from worker.ml.models import load_tokenizer, resolve_model_path
    from worker.ml.pooling import mean_pool
    from worker.ml.runtime import resolve_device

    path = resolve_model_path(base_model)
    tokenizer = load_tokenizer(path)
    model = AutoModel.from_pretrained(path)
    torch_device = resolve_device(device)
    model.to(torch_device).eval()
    token_ids = encode(tokenizer, texts, max_length)
    pad_id = int(tokenizer.pad_token_id)  # type: ignore[arg-type]
    out = np.zeros((len(texts), int(model.config.hidden_size)), dtype=np.float32)
    done = 0
    with torch.inference_mode():
        for indices in sorted_batches([len(t) for t in token_ids], batch_size):
            batch = collate(token_ids, indices, pad_id, None).to(torch_device)
            hidden = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
            pooled = mean_pool(hidden.last_hidden_state, batch.attention_mask)
            out[indices] = pooled.cpu().numpy()
            done += len(indices)
            if reporter is not None:
                reporter.report(phase="score", step=done, total=len(texts))
    return out


def cached_embedder(
    base_model: str,
    cache_dir: Path | None,
    *,
    max_length: int = 128,
    device: str = "auto",
    log: Callable[[str], None] | None = None,
) -> Embedder:
    """An embedder that reads/writes ``cache_dir/<hash>.npy`` (no cache when ``cache_dir`` is
    None); the key covers the texts, the encoder's fingerprint and ``max_length``."""
    from worker.ml.models import model_fingerprint, resolve_model_path

    path = resolve_model_path(base_model)
    fingerprint = model_fingerprint(path)

    def embed(texts: Sequence[str]) -> np.ndarray:
        key = hashlib.sha256(
            f"{texts_hash(texts)}|{fingerprint}|{max_length}".encode()
        ).hexdigest()[:24]
        target = None if cache_dir is None else Path(cache_dir) / f"embed-{key}.npy"
        if target is not None and target.is_file():
            if log:
                log(f"embeddings of {len(texts)} texts reused from {target}")
            return np.asarray(np.load(target, allow_pickle=False))
        if log:
            log(f"embedding {len(texts)} texts with {path} ({max_length} tokens)")
        reporter = None
        if log:
            from worker.simulate.progress import progress_reporter

            reporter = progress_reporter("scoring (embeddings)", len(texts), log, phase="score")
        vectors = encode_texts(texts, path, max_length=max_length, device=device, reporter=reporter)
        if target is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(".partial.npy")
            np.save(partial, vectors, allow_pickle=False)
            partial.replace(target)
        return vectors

    return embed
