"""TAPT's step budget, scaled to the pool: epochs over the project's texts, within bounds.

A fixed step count is too much for a small pool (many passes over the same texts) and too little
for a large one; the playbook's table gives 3k-20k steps and its case study (100,000 tickets) ran
about 8k. So a budget may be given in epochs over the training texts (packed blocks of
``max_length`` tokens, or texts when packing is off), clamped to ``[min_steps, max_steps]``;
early stopping on held-out perplexity ends it sooner when done. ``epochs`` 0 means a fixed
budget of ``max_steps``. The worker plans with the exact number of blocks it tokenised; the web
estimates the same from the pool's characters (``CHARS_PER_TOKEN``) to show the cost up front.
"""

from __future__ import annotations

import math

CHARS_PER_TOKEN = 4.0
"""Characters per word-piece token of English text (WordPiece / BPE vocabularies of ~30k): only
for the web's estimate of a pool's blocks before any tokenising."""


def planned_steps(
    *, max_steps: int, epochs: float = 0.0, min_steps: int = 0, batch_size: int, units: int
) -> int:
    """Optimizer steps for ``epochs`` passes over ``units`` training sequences at ``batch_size``
    per step, clamped to ``[min(min_steps, max_steps), max_steps]``; ``max_steps`` when
    ``epochs`` is 0."""
    if max_steps < 1 or batch_size < 1:
        raise ValueError(f"max_steps and batch_size must be >= 1, got {max_steps}, {batch_size}")
    if epochs < 0 or min_steps < 0 or units < 0:
        raise ValueError(f"epochs, min_steps and units must be >= 0, got {epochs}, {min_steps}, "
                         f"{units}")
    if epochs == 0:
        return max_steps
    wanted = math.ceil(epochs * units / batch_size)
    return max(1, min(max_steps, max(min_steps, wanted)))


def estimated_units(characters: int, max_length: int, packing: bool, texts: int) -> int:
    """Training sequences per epoch, estimated before tokenising: packed blocks of
    ``max_length`` tokens from the characters, or one per text without packing."""
    if not packing:
        return texts
    return max(1, math.ceil(characters / CHARS_PER_TOKEN / max_length)) if texts else 0
