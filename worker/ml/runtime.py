"""Where and how tensors run: device choice, mixed precision, seeds.

Kept apart from the training loops so that the GPU specifics (bf16 where the card supports it,
else fp16 with a gradient scaler) live in one place and the loops stay device-agnostic.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from contract.config_base import PRECISIONS
from contract.errors import ConfigError, NotSupported

DeviceChoice = Literal["auto", "cpu", "cuda"] | str
PrecisionChoice = Literal["auto", "fp32", "bf16", "fp16"]


def resolve_device(choice: str = "auto") -> torch.device:
    """CUDA when present (or asked for), else CPU; ``"cuda:1"`` style strings are kept."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(choice)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={choice!r} but CUDA is not available; use 'auto' or 'cpu'")
    if device.type not in ("cpu", "cuda"):
        raise NotSupported(f"device type {device.type!r} is not supported; use 'cpu' or 'cuda'")
    return device


def resolve_precision(device: torch.device, choice: str = "auto") -> str:
    """Pick the compute precision: bf16 on GPUs that support it, fp16 on older GPUs, fp32 on CPU."""
    if choice not in PRECISIONS:
        raise ConfigError(f"precision={choice!r}; choose one of {PRECISIONS}")
    if choice == "auto":
        if device.type != "cuda":
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if choice == "fp16" and device.type != "cuda":
        raise NotSupported("fp16 autocast needs a CUDA device; use 'bf16' or 'fp32' on CPU")
    return choice


@dataclass(frozen=True)
class Precision:
    """Autocast settings and the gradient scaler that fp16 needs (bf16/fp32 need none)."""

    device: torch.device
    name: str

    @property
    def dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name)

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        if self.dtype is None:
            yield
            return
        with torch.autocast(device_type=self.device.type, dtype=self.dtype):
            yield

    def make_scaler(self) -> torch.amp.GradScaler | None:
        if self.name == "fp16":
            return torch.amp.GradScaler(self.device.type)
        return None


def make_precision(device: torch.device, choice: str = "auto") -> Precision:
    return Precision(device=device, name=resolve_precision(device, choice))


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so runs are reproducible."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))


def peak_memory_bytes(device: torch.device) -> int | None:
    """Peak allocated GPU memory since the last reset; ``None`` on CPU (measure RSS instead)."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return None
