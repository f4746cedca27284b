"""Cache of frozen lower-layer outputs, so re-scoring a pool runs only the upper layers.

When adapters (and any unfrozen blocks) sit only in layers >= k, the outputs of layers < k do not
change between active-learning rounds. Each text's hidden states after layer k-1 are stored once,
keyed by the text, the base weights' fingerprint, the split layer and the truncation length; later
rounds feed them straight into layer k. Memory is bounded (least-recently-used entries go first).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import torch
from torch import nn

from contract.errors import ConfigError, NotSupported
from worker.ml.architecture import layer_list_path

DEFAULT_MAX_BYTES = 2 * 1024**3
SHARED_MAX_BYTES_ENV = "TAPESTRY_LAYER_CACHE_MB"


class LowerLayerCache:
    """LRU map from (text, base fingerprint, split layer, max length) to hidden states (L, H)."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, dtype: torch.dtype = torch.float32):
        if max_bytes <= 0:
            raise ConfigError(f"max_bytes must be > 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self.dtype = dtype
        self._entries: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(text: str, base_fingerprint: str, split_layer: int, max_length: int) -> str:
        payload = f"{base_fingerprint}\x00{split_layer}\x00{max_length}\x00{text}"
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def get(self, key: str) -> torch.Tensor | None:
        found = self._entries.get(key)
        if found is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return found

    def put(self, key: str, hidden: torch.Tensor) -> None:
        stored = hidden.detach().to("cpu", self.dtype).contiguous()
        size = stored.numel() * stored.element_size()
        if key in self._entries:
            old = self._entries.pop(key)
            self._bytes -= old.numel() * old.element_size()
        self._entries[key] = stored
        self._bytes += size
        while self._bytes > self.max_bytes and len(self._entries) > 1:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= evicted.numel() * evicted.element_size()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0


@contextmanager
def layer_slice(model: nn.Module, start: int, stop: int | None = None) -> Iterator[None]:
    """Temporarily keep only encoder layers ``start:stop`` (the model is otherwise unchanged)."""
    owner, attr = layer_list_path(model)
    if getattr(owner, "conv", None) is not None:
        raise NotSupported("lower-layer caching is not supported for DeBERTa with a conv layer")
    full = getattr(owner, attr)
    setattr(owner, attr, nn.ModuleList(list(full)[start:stop]))
    try:
        yield
    finally:
        setattr(owner, attr, full)


@contextmanager
def encoder_input_override(model: nn.Module, hidden: torch.Tensor) -> Iterator[None]:
    """Make the encoder's layer stack start from ``hidden`` instead of the embeddings' output."""
    owner, _ = layer_list_path(model)

    def hook(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if args:
            return (hidden, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": hidden}

    handle = owner.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


@lru_cache(maxsize=1)
def shared_cache() -> LowerLayerCache:
    """The worker process's cache, shared by its training rounds and pool scoring: a round
    computes the frozen layers only for texts no earlier round or scoring pass saw. Entries are
    keyed by the base weights' fingerprint, so a TAPT refresh never reads stale ones. Stored in
    float16 (half the memory; the upper layers run in float32 from them); the budget is
    ``TAPESTRY_LAYER_CACHE_MB`` (default 2048), least recently used entries go first."""
    import os

    raw = os.environ.get(SHARED_MAX_BYTES_ENV, "").strip()
    try:
        max_bytes = int(float(raw) * 1024**2) if raw else DEFAULT_MAX_BYTES
    except ValueError as exc:
        raise ConfigError(f"{SHARED_MAX_BYTES_ENV}={raw!r} is not a number of megabytes") from exc
    return LowerLayerCache(max_bytes=max_bytes, dtype=torch.float16)
