"""TAPT resume files: model weights (safetensors), optimizer state, and progress (JSON).

``optimizer.pt`` is the one file written with ``torch.save``; it is ours, written and read only
by this module for resuming, and read with ``weights_only=True``. Artifacts never contain it.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model
from torch import nn

CHECKPOINT = "checkpoint"
BEST_WEIGHTS = "best.safetensors"


@dataclass
class TaptProgress:
    """Everything besides tensors that a resumed run needs."""

    step: int = 0
    ppl_before: float = float("nan")
    best_ppl: float = float("inf")
    best_step: int = 0
    stale_evals: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    scaler: dict[str, Any] | None = None
    packing: bool | None = None
    """The training layout the run started with; None in checkpoints from before packing."""
    eval_seconds: float = 0.0
    """What one held-out perplexity pass took (the first): part of a step's pace."""
    planned_steps: int | None = None
    """The step budget fitted to the time budget (``TaptConfig.max_minutes``) once measured."""


def save_checkpoint(
    work_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer, progress: TaptProgress
) -> None:
    """Write a complete checkpoint next to the old one, then swap it in."""
    final = work_dir / CHECKPOINT
    temp = work_dir / f"{CHECKPOINT}.tmp"
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir(parents=True)
    save_model(model, str(temp / "model.safetensors"))
    torch.save(optimizer.state_dict(), temp / "optimizer.pt")
    (temp / "progress.json").write_text(json.dumps(asdict(progress)), encoding="utf-8")
    old = work_dir / f"{CHECKPOINT}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.rename(final, old)
    os.rename(temp, final)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(
    work_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer
) -> TaptProgress | None:
    """Restore model and optimizer in place; ``None`` when there is nothing to resume."""
    folder = work_dir / CHECKPOINT
    if not (folder / "progress.json").is_file():
        return None
    load_model(model, str(folder / "model.safetensors"))
    state = torch.load(folder / "optimizer.pt", weights_only=True, map_location="cpu")
    optimizer.load_state_dict(state)
    data = json.loads((folder / "progress.json").read_text(encoding="utf-8"))
    return TaptProgress(**data)


def save_best(work_dir: Path, model: nn.Module) -> None:
    temp = work_dir / (BEST_WEIGHTS + ".tmp")
    save_model(model, str(temp))
    os.replace(temp, work_dir / BEST_WEIGHTS)


def load_best(work_dir: Path, model: nn.Module) -> None:
    load_model(model, str(work_dir / BEST_WEIGHTS))
