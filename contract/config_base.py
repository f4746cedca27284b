"""What the training-round and TAPT configs share: dict round trips and the common checks.

Both are dataclasses stored as JSON on the project or run row, so ``from_dict`` refuses unknown
keys with the list of known ones instead of silently dropping a misspelt setting.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, fields
from typing import Any, ClassVar, Self

from contract.errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


class OptimConfig:
    """Mixin for dataclass configs with ``batch_size``, ``grad_accum``, ``warmup_ratio``,
    ``precision`` and ``max_grad_norm``."""

    config_name: ClassVar[str] = "config"
    batch_size: int
    grad_accum: int
    warmup_ratio: float
    precision: str
    max_grad_norm: float

    def check_ints(self, names: Iterable[str]) -> None:
        for name in names:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be an int >= 1, got {value!r}")

    def check_optimisation(self) -> None:
        if self.batch_size % self.grad_accum:
            raise ConfigError(
                f"batch_size={self.batch_size} must be divisible by grad_accum={self.grad_accum} "
                "(batch_size is the effective batch; each micro-batch is batch_size/grad_accum)"
            )
        if not 0 <= self.warmup_ratio < 0.5:
            raise ConfigError(f"warmup_ratio must be in [0, 0.5), got {self.warmup_ratio}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision={self.precision!r}; choose one of {PRECISIONS}")
        if self.max_grad_norm <= 0:
            raise ConfigError(f"max_grad_norm must be > 0, got {self.max_grad_norm}")

    @property
    def micro_batch_size(self) -> int:
        return self.batch_size // self.grad_accum

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown {cls.config_name} keys {unknown}; known: {sorted(known)}"
            )
        return cls(**dict(data))
