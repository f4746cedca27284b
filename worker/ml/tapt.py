"""TAPT: task-adaptive pretraining, i.e. continued masked-LM training on the project's texts.

15 % masking (80/10/10, whole words optional), logits only at masked positions (a sparse MLM
head, :mod:`worker.ml.mlm_loss`), LR 1e-4 with 3 % warmup and cosine decay, gradient
accumulation, a step budget, held-out perplexity every ``eval_every`` steps with early stopping
and the best weights kept, and resumable checkpoints. With a time budget (``max_minutes``) the
step budget is fitted once to the pace of the first steps (the held-out evaluations counted), so
the learning-rate schedule completes within the time, and the run stops at the budget whatever
the pace turns out to be (evaluated and saved, the best weights kept). With ``epochs`` the step
budget is scaled to the pool: that many passes over the training blocks, clamped to
``[min_steps, max_steps]`` (:mod:`contract.tapt_budget`; the GPU default is 3 epochs within the
playbook's 3k-20k steps).

Training sequences are packed by default (``packing``): each epoch the training texts are
shuffled (seeded by epoch), tokenised whole, concatenated with their own special tokens as
separators and cut into blocks of exactly ``max_length`` tokens, so no step computes on padding
and long texts are used beyond their first ``max_length`` tokens. A step is then always
``batch_size`` x ``max_length`` real tokens, the budget ``max_steps`` counts such steps, and an
epoch is one pass over every training token (the remainder shorter than a block, a different one
each epoch, is left out). With ``packing=False`` a step is ``batch_size`` texts, each truncated to
``max_length`` and padded within length-bucketed batches. Attention in a packed block spans the
texts it holds, as in Hugging Face's ``run_mlm``. Held-out perplexity is always computed per text
(truncated, masked once), so it reads the same whichever layout trained the model. An interrupted
run resumes in the layout it started with. Packing is the default by measurement
(``tests/benchmarks/bench_tapt_throughput.py``, 2 busy CPU cores, real tokens/s pooled over the
steps): 20 Newsgroups 256 packed vs 244 per text vs 165 for a plain Hugging Face MLM step; R8
298 vs 260 vs 149. Per-text batches already pad little (they are length-bucketed), so most of
the gain over the plain step is the sparse head; packing adds the rest, and more where texts are
short, since a step's fixed cost (the optimizer over all weights) is then spread over more
tokens.
When the base has no MLM head (all-MiniLM-L6-v2) a new one is created and trained with a higher
learning rate (``new_head_lr_multiplier``), because it starts from random while the encoder should
move only a little. A "refresh" pass is this same function on new texts from a TAPT'd directory.

Output: ``out_dir`` holds the model (safetensors + config, MLM head included so a refresh pass
continues it) and the tokenizer, loadable as the base for adapters, plus ``tapt.json``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from contract.config_base import OptimConfig
from contract.errors import ConfigError
from contract.tapt_budget import planned_steps
from worker.ml.architecture import mlm_head
from worker.ml.batching import collate, shuffled_bucket_batches
from worker.ml.masking import encode_with_words, mask_batch, pack_blocks, pad_word_ids
from worker.ml.mlm_loss import masked_lm_loss_sum
from worker.ml.models import load_masked_lm, load_tokenizer, model_fingerprint, resolve_model_path
from worker.ml.progress import NullReporter, ProgressReporter, StepClock
from worker.ml.runtime import Precision, make_precision, resolve_device, set_seed
from worker.ml.schedule import apply_lr, warmup_steps
from worker.ml.tapt_state import (
    TaptProgress,
    load_best,
    load_checkpoint,
    save_best,
    save_checkpoint,
)

PHASE = "tapt"
RECORD = "tapt.json"
WORK_DIR = ".tapt-work"
RECOMMENDED_LR = (5e-5, 1e-4)


MAX_MINUTES = 7 * 24 * 60.0
"""The longest time budget a TAPT run accepts (a week)."""
MAX_EPOCHS = 100.0
"""The most passes over the pool an epoch budget may ask for."""
CALIBRATION_STEPS = 4
"""With a time budget, the pace of steps 2..4 (the first carries one-off costs) fits the step
budget to it, once per run."""


@dataclass
class TaptConfig(OptimConfig):
    """TAPT hyperparameters. ``batch_size`` is the effective batch (``grad_accum`` splits it)."""

    config_name: ClassVar[str] = "TAPT config"

    max_steps: int = 1000
    lr: float = 1e-4
    batch_size: int = 32
    grad_accum: int = 1
    mlm_probability: float = 0.15
    whole_word_masking: bool = False
    warmup_ratio: float = 0.03
    eval_every: int = 100
    patience: int = 3
    max_length: int = 128
    seed: int = 0
    heldout_fraction: float = 0.1
    max_heldout: int = field(default=1000, metadata={"help": "cap on held-out texts (eval cost)"})
    weight_decay: float = 0.01
    new_head_lr_multiplier: float = 10.0
    masked_only_logits: bool = True
    packing: bool = field(
        default=True, metadata={"help": "pack texts into full max_length blocks (no padding)"}
    )
    max_grad_norm: float = 1.0
    device: str = "auto"
    precision: str = "auto"
    max_minutes: float = field(
        default=0.0,
        metadata={"help": "time budget (0: none): the step budget is fitted to the pace of the "
                          "first steps, and the run stops at the budget whatever the pace"},
    )
    epochs: float = field(
        default=0.0,
        metadata={"help": "step budget as passes over the training texts (packed blocks), "
                          "clamped to [min_steps, max_steps]; 0: max_steps steps"},
    )
    min_steps: int = 0

    def __post_init__(self) -> None:
        self.check_ints(("max_steps", "batch_size", "grad_accum", "eval_every", "patience",
                         "max_length", "max_heldout"))
        if not 0 <= self.epochs <= MAX_EPOCHS:
            raise ConfigError(f"epochs must be between 0 and {MAX_EPOCHS:g} (0: a fixed budget "
                              f"of max_steps), got {self.epochs}")
        if self.min_steps < 0 or self.min_steps != int(self.min_steps):
            raise ConfigError(f"min_steps must be a whole number >= 0, got {self.min_steps}")
        self.check_optimisation()
        if not 0 <= self.max_minutes <= MAX_MINUTES:
            raise ConfigError(f"max_minutes must be between 0 and {MAX_MINUTES:g} (0: no time "
                              f"budget), got {self.max_minutes}")
        if not 0 < self.lr < 1:
            raise ConfigError(f"lr must be in (0, 1), got {self.lr}")
        low, high = RECOMMENDED_LR
        if not low <= self.lr <= high:
            warnings.warn(
                f"TAPT lr={self.lr:g} is outside the recommended {low:g}..{high:g}; higher rates "
                "risk drifting away from the pretrained weights, lower ones barely adapt",
                stacklevel=2,
            )
        if not 0 < self.mlm_probability < 1:
            raise ConfigError(f"mlm_probability must be in (0, 1), got {self.mlm_probability}")
        if not 0 < self.heldout_fraction < 1:
            raise ConfigError(f"heldout_fraction must be in (0, 1), got {self.heldout_fraction}")
        if self.new_head_lr_multiplier <= 0:
            raise ConfigError("new_head_lr_multiplier must be > 0")


@dataclass
class TaptResult:
    steps: int
    ppl_before: float
    ppl_after: float
    best_step: int
    model_dir: Path
    seconds: float
    new_head: bool = False
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str = ""
    """Why it ended before ``max_steps``: "perplexity" (early stopping), "time" (the time
    budget), or "" (it ran its step budget, fitted to the time budget when there was one)."""


def split_heldout(
    texts: Sequence[str], config: TaptConfig, heldout: Sequence[str] | None
) -> tuple[list[str], list[str]]:
    """Training texts and held-out texts (a seeded random split unless held-out texts given)."""
    texts = [t for t in texts if t and t.strip()]
    if heldout is not None:
        held = [t for t in heldout if t and t.strip()][: config.max_heldout]
        if not texts or not held:
            raise ConfigError("TAPT needs non-empty training and held-out texts")
        return texts, held
    if len(texts) < 2:
        raise ConfigError(f"TAPT needs at least 2 non-empty texts, got {len(texts)}")
    order = np.random.default_rng(config.seed).permutation(len(texts))
    n_held = min(config.max_heldout, max(1, round(len(texts) * config.heldout_fraction)))
    n_held = min(n_held, len(texts) - 1)
    return [texts[i] for i in order[n_held:]], [texts[i] for i in order[:n_held]]


Inputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]
"""(input ids, attention mask, word ids or None) of one micro-batch, on the CPU."""


class _Corpus:
    """Tokenised texts and reproducible, length-bucketed micro-batches indexed by number."""

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], config: TaptConfig
    ):
        self.ids, self.words = encode_with_words(tokenizer, texts, config.max_length)
        self.lengths = [len(row) for row in self.ids]
        self.config = config
        self.pad_id = int(tokenizer.pad_token_id)  # type: ignore[arg-type]
        self.per_epoch = math.ceil(len(self.ids) / config.micro_batch_size)
        self._epoch = -1
        self._batches: list[list[int]] = []

    def batch(self, micro_index: int) -> list[int]:
        epoch, offset = divmod(micro_index, self.per_epoch)
        if epoch != self._epoch:
            rng = np.random.default_rng([self.config.seed, epoch])
            self._batches = shuffled_bucket_batches(self.lengths, self.config.micro_batch_size, rng)
            self._epoch = epoch
        return self._batches[offset]

    def tensors(self, indices: Sequence[int]) -> Inputs:
        batch = collate(self.ids, indices, self.pad_id)
        words = (
            pad_word_ids(self.words, indices, batch.input_ids.shape[1])
            if self.config.whole_word_masking
            else None
        )
        return batch.input_ids, batch.attention_mask, words

    def micro_batch(self, micro_index: int) -> Inputs:
        return self.tensors(self.batch(micro_index))


class _PackedCorpus:
    """Whole tokenised texts packed into ``max_length`` blocks, re-packed in a new order per epoch.

    Micro-batch ``n`` depends only on the seed and ``n`` (as for :class:`_Corpus`), so a resumed
    run sees the same blocks.
    """

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], config: TaptConfig
    ):
        ids, words = encode_with_words(tokenizer, texts, None)
        # whole texts are long: hold them as int32 arrays rather than lists of Python ints
        self.ids = [np.asarray(row, dtype=np.int32) for row in ids]
        self.words = [np.asarray(row, dtype=np.int32) for row in words]
        del ids, words
        self.config = config
        self.tokens = sum(len(row) for row in self.ids)
        self.blocks_per_epoch = max(1, self.tokens // config.max_length)
        self.per_epoch = math.ceil(self.blocks_per_epoch / config.micro_batch_size)
        self._epoch = -1
        self._blocks = np.zeros((0, config.max_length), dtype=np.int64)
        self._block_words = self._blocks

    def _pack(self, epoch: int) -> None:
        rng = np.random.default_rng([self.config.seed, epoch])
        blocks, words = pack_blocks(
            self.ids, self.words, rng.permutation(len(self.ids)).tolist(), self.config.max_length
        )
        order = rng.permutation(len(blocks))  # neighbouring blocks share a text: split them up
        self._blocks, self._block_words = blocks[order], words[order]
        self._epoch = epoch

    def micro_batch(self, micro_index: int) -> Inputs:
        epoch, offset = divmod(micro_index, self.per_epoch)
        if epoch != self._epoch:
            self._pack(epoch)
        rows = slice(offset * self.config.micro_batch_size,
                     (offset + 1) * self.config.micro_batch_size)
        input_ids = torch.from_numpy(self._blocks[rows].copy())
        words = (
            torch.from_numpy(self._block_words[rows].copy())
            if self.config.whole_word_masking
            else None
        )
        return input_ids, torch.ones_like(input_ids), words


TrainCorpus = _Corpus | _PackedCorpus


def position_limit(model: Any, tokenizer: PreTrainedTokenizerBase) -> int:
    """The longest sequence the model has positions for (RoBERTa-style models offset theirs by
    the padding index + 1) and the tokenizer allows."""
    config = getattr(model, "config", None)
    positions = int(getattr(config, "max_position_embeddings", 0) or 0)
    if positions and getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        positions -= 2
    limits = [n for n in (positions, int(getattr(tokenizer, "model_max_length", 0) or 0)) if n > 0]
    return min(limits) if limits else 1_000_000


def training_corpus(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], config: TaptConfig
) -> TrainCorpus:
    """The training micro-batches of ``config``'s layout (packed blocks or per-text batches)."""
    return (_PackedCorpus if config.packing else _Corpus)(tokenizer, texts, config)


Masked = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]
"""(corrupted input ids, attention mask or None, labels) of one micro-batch, on the device."""


class _Tapt:
    """State of one TAPT run; methods are the steps of :func:`run_tapt`."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        config: TaptConfig,
        precision: Precision,
        new_head: bool,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.precision = precision
        self.device = precision.device
        self.vocab_size = int(model.config.vocab_size)
        # the fused kernel (Hugging Face Trainer's default AdamW with this torch): on 2 busy CPU
        # cores a step over MiniLM's 22M weights took 0.85 s fused against 1.7-3.8 s for the
        # for-loop version, next to 6-9 s of forward and backward for 16 x 128 tokens
        fused = self.device.type in ("cpu", "cuda")
        self.optimizer = torch.optim.AdamW(self._param_groups(new_head), fused=fused or None)
        self.scaler = precision.make_scaler()
        self.last_tokens = 0

    def _param_groups(self, new_head: bool) -> list[dict[str, Any]]:
        config = self.config
        encoder_ids = {id(p) for p in self.model.base_model.parameters()}
        head = mlm_head(self.model)
        head_only = (
            [p for p in head.parameters() if id(p) not in encoder_ids]
            if isinstance(head, torch.nn.Module)
            else []
        )
        head_ids = {id(p) for p in head_only}
        head_lr = config.lr * (config.new_head_lr_multiplier if new_head else 1.0)
        groups = []
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        for is_head, lr in ((False, config.lr), (True, head_lr)):
            members = [(n, p) for n, p in named if (id(p) in head_ids) == is_head]
            decay = [p for n, p in members if p.ndim > 1 and "norm" not in n.lower()]
            rest = [p for n, p in members if not (p.ndim > 1 and "norm" not in n.lower())]
            for params, wd in ((decay, config.weight_decay), (rest, 0.0)):
                if params:
                    groups.append({"params": params, "lr": lr, "base_lr": lr, "weight_decay": wd})
        return groups

    def masked(self, batch: Inputs, seed: Sequence[int]) -> Masked:
        """Corrupted inputs, attention mask (``None`` without padding) and labels, on device."""
        input_ids, attention_mask, words = batch
        generator = torch.Generator().manual_seed(
            int(np.random.SeedSequence(seed).generate_state(1)[0])
        )
        inputs, labels = mask_batch(
            self.tokenizer,
            input_ids,
            attention_mask,
            self.config.mlm_probability,
            generator,
            self.vocab_size,
            words,
        )
        mask = None if bool(attention_mask.all()) else attention_mask.to(self.device)
        return inputs.to(self.device), mask, labels.to(self.device)

    def heldout_batches(self, corpus: _Corpus) -> list[Masked]:
        """Held-out texts masked once with a fixed seed, so perplexities are comparable."""
        from worker.ml.batching import sorted_batches

        return [
            self.masked(corpus.tensors(indices), (self.config.seed, 7, number))
            for number, indices in enumerate(
                sorted_batches(corpus.lengths, self.config.micro_batch_size)
            )
        ]

    def perplexity(self, batches: list[Masked]) -> float:
        self.model.eval()
        total, count = 0.0, 0
        with torch.inference_mode(), self.precision.autocast():
            for inputs, mask, labels in batches:
                loss, n = masked_lm_loss_sum(
                    self.model, inputs, mask, labels, masked_only=self.config.masked_only_logits
                )
                total += float(loss)
                count += n
        self.model.train()
        return float(math.exp(min(total / max(count, 1), 50.0)))

    def train_step(self, corpus: TrainCorpus, step: int) -> float:
        """One optimizer step; the mean loss per masked token. ``self.last_tokens``: its tokens."""
        config = self.config
        micro = [
            self.masked(
                corpus.micro_batch(step * config.grad_accum + k), (config.seed, 1, step, k)
            )
            for k in range(config.grad_accum)
        ]
        self.last_tokens = sum(
            int(inputs.numel()) if mask is None else int(mask.sum()) for inputs, mask, _ in micro
        )
        # dropout draws from the global RNG: seed it per step so a resumed run is identical
        torch.manual_seed(int(np.random.SeedSequence((config.seed, 2, step)).generate_state(1)[0]))
        masked_total = sum(int((labels != -100).sum()) for _, _, labels in micro)
        total = 0.0
        for inputs, mask, labels in micro:
            with self.precision.autocast():
                loss, _ = masked_lm_loss_sum(
                    self.model, inputs, mask, labels, masked_only=config.masked_only_logits
                )
            loss = loss / max(masked_total, 1)
            total += float(loss.detach())
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total


def _finished(out_dir: Path) -> TaptResult | None:
    record = out_dir / RECORD
    if not record.is_file():
        return None
    data = json.loads(record.read_text(encoding="utf-8"))
    return TaptResult(
        steps=data["steps"],
        ppl_before=data["ppl_before"],
        ppl_after=data["ppl_after"],
        best_step=data["best_step"],
        model_dir=out_dir,
        seconds=data["seconds"],
        new_head=data.get("new_head", False),
        stopped_early=data.get("stopped_early", False),
        history=data.get("history", []),
        stop_reason=data.get("stop_reason", ""),
    )


def run_tapt(
    texts: Sequence[str],
    *,
    base_model: str,
    out_dir: Path,
    config: TaptConfig,
    heldout_texts: Sequence[str] | None = None,
    reporter: ProgressReporter | None = None,
    resume: bool = True,
) -> TaptResult:
    """Continue masked-LM training of ``base_model`` on ``texts``; write the result to ``out_dir``.

    Idempotent: a finished ``out_dir`` (with ``tapt.json``) is returned as is when ``resume``.
    An interrupted run resumes from its last checkpoint (every ``eval_every`` steps).
    """
    out_dir = Path(out_dir)
    if resume and (done := _finished(out_dir)) is not None:
        return done
    reporter = reporter or NullReporter()
    train_texts, held_texts = split_heldout(texts, config, heldout_texts)
    work = out_dir / WORK_DIR
    if not resume:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    set_seed(config.seed)
    precision = make_precision(resolve_device(config.device), config.precision)
    base_path = resolve_model_path(base_model)
    tokenizer = load_tokenizer(base_path)
    model, new_head = load_masked_lm(base_path)
    model.to(precision.device)  # type: ignore[arg-type]
    run = _Tapt(model, tokenizer, config, precision, new_head)
    progress = load_checkpoint(work, model, run.optimizer) if resume else None
    if progress is not None:
        # resume in the layout the run started with (checkpoints older than packing: per text)
        packing = bool(progress.packing)
        if packing != config.packing:
            config = replace(config, packing=packing)
            run.config = config
    limit = position_limit(model, tokenizer)
    if config.packing and config.max_length > limit:
        # a packed block is exactly max_length tokens: it must fit the model's positions
        config = replace(config, max_length=limit)
        run.config = config
    corpus = training_corpus(tokenizer, train_texts, config)
    if config.epochs > 0:  # the budget scaled to the pool (blocks as tokenised here)
        config = replace(config, epochs=0.0, max_steps=planned_steps(
            max_steps=config.max_steps, epochs=config.epochs, min_steps=config.min_steps,
            batch_size=config.batch_size, units=units_per_epoch(corpus)))
        run.config = config
    held_batches = run.heldout_batches(_Corpus(tokenizer, held_texts, config))
    started = time.perf_counter()
    if progress is None:
        ppl = run.perplexity(held_batches)
        progress = TaptProgress(
            ppl_before=ppl,
            best_ppl=ppl,
            history=[{"step": 0, "ppl": ppl}],
            packing=config.packing,
            eval_seconds=time.perf_counter() - started,
        )
        save_best(work, model)
    elif run.scaler is not None and progress.scaler:
        run.scaler.load_state_dict(progress.scaler)
    prior_seconds = progress.seconds
    stop_reason = _loop(run, corpus, held_batches, progress, work, reporter, started)
    load_best(work, model)
    progress.seconds = prior_seconds + time.perf_counter() - started
    return _finalise(
        out_dir,
        model,
        tokenizer,
        progress,
        base_path,
        config,
        new_head,
        stop_reason,
        work,
        train_texts,
        held_texts,
        _train_tokens(corpus),
    )


def units_per_epoch(corpus: TrainCorpus) -> int:
    """Training sequences in one epoch: packed blocks, or texts without packing."""
    if isinstance(corpus, _PackedCorpus):
        return corpus.blocks_per_epoch
    return len(corpus.ids)


def _train_tokens(corpus: TrainCorpus) -> int:
    """Tokens one epoch trains on (packed: whole texts; per text: truncated texts)."""
    if isinstance(corpus, _PackedCorpus):
        return corpus.tokens
    return sum(corpus.lengths)


def _loop(
    run: _Tapt,
    corpus: TrainCorpus,
    held_batches: list[Masked],
    progress: TaptProgress,
    work: Path,
    reporter: ProgressReporter,
    started: float,
) -> str:
    """Train to the step budget; returns why it stopped sooner ("perplexity", "time") or ""."""
    config = run.config
    budget = config.max_minutes * 60.0
    total = progress.planned_steps or config.max_steps
    warmup = warmup_steps(total, config.warmup_ratio)
    clock = StepClock(total, start_step=progress.step)
    run.model.train()
    tokens, tokens_started = 0, time.perf_counter()
    first_step = progress.step
    pace_from: float | None = None
    while progress.step < total:
        apply_lr(run.optimizer, progress.step, total, warmup)
        loss = run.train_step(corpus, progress.step)
        tokens += run.last_tokens
        progress.step += 1
        spent = progress.seconds + time.perf_counter() - started
        if budget and progress.planned_steps is None:
            if progress.step == first_step + 1:
                pace_from = time.perf_counter()
            elif progress.step == first_step + CALIBRATION_STEPS and pace_from is not None:
                pace = (time.perf_counter() - pace_from) / (CALIBRATION_STEPS - 1)
                total = progress.planned_steps = fit_steps(
                    budget - spent, pace, progress.eval_seconds / config.eval_every,
                    done=progress.step, most=config.max_steps,
                )
                warmup = warmup_steps(total, config.warmup_ratio)
                clock = StepClock(total, start_step=progress.step)
        out_of_time = bool(budget) and spent >= budget and progress.step < total
        metrics: dict[str, float] = {
            "loss": loss,
            "eta_seconds": clock.eta_seconds(progress.step),
            "tokens_per_s": tokens / max(time.perf_counter() - tokens_started, 1e-9),
        }
        evaluate_now = (
            progress.step % config.eval_every == 0 or progress.step == total or out_of_time
        )
        if evaluate_now:
            ppl = run.perplexity(held_batches)
            metrics["perplexity"] = ppl
            progress.history.append({"step": progress.step, "ppl": ppl, "loss": loss})
            if ppl < progress.best_ppl:
                progress.best_ppl, progress.best_step, progress.stale_evals = ppl, progress.step, 0
                save_best(work, run.model)
            else:
                progress.stale_evals += 1
        reporter.report(phase=PHASE, step=progress.step, total=total, metrics=metrics)
        cancel = reporter.cancelled()
        if evaluate_now or cancel:
            progress.seconds += time.perf_counter() - started
            started = time.perf_counter()
            progress.scaler = run.scaler.state_dict() if run.scaler is not None else None
            save_checkpoint(work, run.model, run.optimizer, progress)
        if cancel:
            from contract.errors import Cancelled

            raise Cancelled(f"TAPT cancelled at step {progress.step}; resume continues from there")
        if out_of_time:
            return "time"
        if evaluate_now and progress.stale_evals >= config.patience:
            return "perplexity"
    return ""


def fit_steps(seconds_left: float, step_seconds: float, eval_seconds_per_step: float, *,
              done: int, most: int) -> int:
    """The step budget that ends within ``seconds_left`` at the measured pace (a step plus its
    share of the held-out evaluations), counted from ``done`` steps, at most ``most``."""
    per_step = max(step_seconds + eval_seconds_per_step, 1e-9)
    return max(done, min(most, done + int(max(seconds_left, 0.0) / per_step)))


def _finalise(
    out_dir: Path,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    progress: TaptProgress,
    base_path: str,
    config: TaptConfig,
    new_head: bool,
    stop_reason: str,
    work: Path,
    train_texts: list[str],
    held_texts: list[str],
    train_tokens: int,
) -> TaptResult:
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
    record = {
        "steps": progress.step,
        "ppl_before": progress.ppl_before,
        "ppl_after": progress.best_ppl,
        "best_step": progress.best_step,
        "seconds": round(progress.seconds, 3),
        "base_model": base_path,
        "base_model_sha256": model_fingerprint(base_path),
        "new_head": new_head,
        "stopped_early": bool(stop_reason),
        "stop_reason": stop_reason,
        "planned_steps": progress.planned_steps,
        "config": config.to_dict(),
        "train_texts": len(train_texts),
        "train_tokens_per_epoch": train_tokens,
        "layout": "packed" if config.packing else "per_text",
        "heldout_texts": len(held_texts),
        "history": progress.history,
    }
    temp = out_dir / (RECORD + ".tmp")
    temp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(temp, out_dir / RECORD)
    shutil.rmtree(work, ignore_errors=True)
    done = _finished(out_dir)
    assert done is not None
    return done
