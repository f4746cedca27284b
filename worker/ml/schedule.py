"""Learning-rate schedule: linear warmup then cosine decay to zero, as a pure function of step.

A pure function (instead of a stateful LambdaLR) makes resuming trivial: the step number alone
restores the learning rate, and resume files stay JSON.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer


def warmup_steps(total_steps: int, warmup_ratio: float) -> int:
    return max(1, math.ceil(total_steps * warmup_ratio)) if warmup_ratio > 0 else 0


def lr_factor(step: int, total_steps: int, warmup: int) -> float:
    """Multiplier of the base LR for the optimizer step number ``step`` (0-based)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    remaining = max(1, total_steps - warmup)
    progress = min(1.0, (step - warmup) / remaining)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def apply_lr(optimizer: Optimizer, step: int, total_steps: int, warmup: int) -> float:
    """Set each param group's LR from its ``base_lr`` entry; return the factor used."""
    factor = lr_factor(step, total_steps, warmup)
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
    return factor
