"""A trained text classifier: tokenizer + base + adapter + head, in eval mode, scoring pools.

One forward pass yields both class probabilities and mean-pooled embeddings (for nearest
neighbours and diversity), batches are length-bucketed and run under ``torch.inference_mode``,
and with a :class:`LowerLayerCache` only the layers above the frozen ones are recomputed.

On a CPU, ``scoring_precision="int8"`` runs the encoder layers' linears in int8 (see
:mod:`worker.ml.quantize`): int8 copies with the adapter merged are swapped in for the pass, the
model that trains stays in float. It is not the default (it does not speed up the cached default
round model, ``docs/results.md``); on the default round model it agrees with fp32 on 99.4 % of R8
argmax labels with VNNI and 99.8 % without, where the down projections stay in float
(``tests/worker/ml/test_quantize.py``, :data:`worker.ml.quantize.FLOAT_DOWN_PROJECTIONS`). On a
GPU scoring keeps the autocast ``precision``.

A multi-label classifier (``multi_label=True``, issue 19) has independent sigmoid outputs, one per
label, and a decision threshold per label (``thresholds``, tuned on dev by
:func:`worker.ml.training.train_classifier` and stored with the artifact): its "probabilities"
need not sum to 1, and a label is on when its probability reaches its threshold.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from contract.adapter_config import CACHEABLE_KINDS
from contract.errors import ConfigError, NotSupported
from worker.ml.adapters.build import AdaptedModel
from worker.ml.architecture import encoder_layers, encoder_of, head_module_names, unwrap
from worker.ml.batching import Batch, collate, encode, sorted_batches
from worker.ml.layer_cache import LowerLayerCache, encoder_input_override, layer_slice
from worker.ml.pooling import mean_pool
from worker.ml.quantize import CALIBRATION_TEXTS, ScoringWeights, int8_supported
from worker.ml.runtime import make_precision, resolve_device

SCORING_PRECISIONS = ("auto", "fp32", "int8")
"""``scoring_precision`` choices: "auto" and "fp32" score with the autocast ``precision`` (fp32
on a CPU); "int8" quantizes the encoder's linears on a CPU."""
INT8_KINDS = ("lora", "ia3", "bottleneck", "full")
"""Adapter kinds scored in int8 on a CPU; prompt tuning (virtual tokens) stays in float."""
MERGED_KINDS = ("lora", "ia3")
"""Adapter kinds that float scoring on a CPU runs merged into the base linears (peft merge)."""


def resolve_scoring_precision(device: torch.device, kind: str, choice: str = "auto") -> str:
    """"int8" or "float" (the classifier's autocast precision) for scoring on ``device``."""
    if choice not in SCORING_PRECISIONS:
        raise ConfigError(f"scoring_precision={choice!r}; choose one of {SCORING_PRECISIONS}")
    if choice != "int8":
        return "float"
    if not (int8_supported(device) and kind in INT8_KINDS):
        raise NotSupported(
            f"int8 scoring runs on a CPU for adapter kinds {INT8_KINDS}; "
            f"got device {device.type!r}, kind {kind!r} (use scoring_precision='auto')"
        )
    return "int8"


@dataclass
class PoolScores:
    """Scores of a pool from one pass: probabilities, embeddings, optional MC-dropout samples."""

    probs: np.ndarray  # (n, k) float32
    embeddings: np.ndarray  # (n, d) float32, L2-normalised mean pool of the last layer
    mc_probs: np.ndarray | None = None  # (samples, n, k) float32, dropout active


@dataclass
class _Outputs:
    logits: torch.Tensor
    embeddings: torch.Tensor
    penultimate: torch.Tensor | None


def final_head_linear(model: nn.Module, num_labels: int) -> nn.Linear:
    """The last linear layer of the classification head (the one producing the logits)."""
    inner = unwrap(model)
    for name in head_module_names(inner):
        module = inner.get_submodule(name)
        active = getattr(module, "modules_to_save", None)  # peft ModulesToSaveWrapper
        if isinstance(active, nn.ModuleDict):
            module = active[getattr(module, "active_adapter", "default")]
        linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
        if linears and linears[-1].out_features == num_labels:
            return linears[-1]
    raise ConfigError(f"no head linear with {num_labels} outputs in {type(inner).__name__}")


class TextClassifier:
    """Tokenizer + base + adapter + head, ready to score texts."""

    def __init__(
        self,
        adapted: AdaptedModel,
        tokenizer: PreTrainedTokenizerBase,
        label_names: Sequence[str],
        *,
        base_model: str,
        base_fingerprint: str,
        max_length: int = 256,
        device: str | torch.device = "auto",
        precision: str = "auto",
        scoring_precision: str = "auto",
        multi_label: bool = False,
        thresholds: Sequence[float] | np.ndarray | None = None,
    ) -> None:
        self.adapted = adapted
        self.multi_label = multi_label
        self.thresholds: np.ndarray | None = None
        if multi_label:
            self.set_thresholds(
                np.full(len(label_names), 0.5) if thresholds is None else thresholds,
                len(label_names),
            )
        elif thresholds is not None:
            raise ConfigError("thresholds belong to multi-label classifiers only")
        self.tokenizer = tokenizer
        self.label_names = list(label_names)
        self.base_model = base_model
        self.base_fingerprint = base_fingerprint
        self.max_length = max_length
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.precision = make_precision(self.device, precision)
        self.layer_cache: LowerLayerCache | None = None
        self.scoring_precision = scoring_precision
        self._int8 = ScoringWeights(int8=True)
        self._merged = ScoringWeights(int8=False)
        self.metadata: dict[str, Any] = {}
        self.model.to(self.device)
        self.model.eval()

    def set_thresholds(self, thresholds: Sequence[float] | np.ndarray, n: int | None = None
                       ) -> None:
        """One decision threshold per label, each in (0, 1) (multi-label only)."""
        values = np.asarray(thresholds, dtype=np.float64)
        expected = self.num_labels if n is None else n
        if values.shape != (expected,) or not ((values > 0) & (values < 1)).all():
            raise ConfigError(f"need {expected} thresholds in (0, 1), got {values.tolist()}")
        self.thresholds = values

    def predict_sets(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """(n, L) 0/1 label sets at the stored thresholds (multi-label only)."""
        if not self.multi_label or self.thresholds is None:
            raise NotSupported("label sets come from multi-label classifiers only")
        probs = self.predict_proba(texts, batch_size=batch_size)
        return (probs >= self.thresholds).astype(np.int8)

    @property
    def model(self) -> nn.Module:
        return self.adapted.model

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def split_layer(self) -> int:
        """First layer whose output depends on trained weights; 0 when nothing can be cached."""
        config = self.adapted.config
        if config.kind not in CACHEABLE_KINDS:
            return 0
        return min(config.trained_layers(len(encoder_layers(self.model))))

    @property
    def scoring_precision(self) -> str:
        """The setting: "auto" / "fp32" (the autocast precision) or "int8" (CPU only)."""
        return self._scoring_precision

    @scoring_precision.setter
    def scoring_precision(self, choice: str) -> None:
        resolve_scoring_precision(self.device, self.adapted.config.kind, choice)  # validate
        self._scoring_precision = choice

    @property
    def scores_in_int8(self) -> bool:
        kind = self.adapted.config.kind
        return resolve_scoring_precision(self.device, kind, self.scoring_precision) == "int8"

    def use_layer_cache(self, cache: LowerLayerCache | None) -> None:
        """Score with cached frozen lower layers (ignored when adapters reach layer 0)."""
        self.layer_cache = cache

    # -- public scoring -------------------------------------------------------------------
    def predict_proba(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        return self.score(texts, batch_size=batch_size).probs

    def embed(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        return self.score(texts, batch_size=batch_size).embeddings

    def score(
        self, texts: Sequence[str], *, batch_size: int = 64, mc_dropout: int = 0
    ) -> PoolScores:
        """Probabilities and embeddings in one pass; ``mc_dropout`` extra passes with dropout."""
        if mc_dropout < 0:
            raise ConfigError(f"mc_dropout must be >= 0, got {mc_dropout}")
        with _scoring_mode(self.model, dropout=False):
            probs, embeddings, _ = self._run(texts, batch_size)
        mc = None
        if mc_dropout:
            with _scoring_mode(self.model, dropout=True):
                mc = np.stack([self._run(texts, batch_size)[0] for _ in range(mc_dropout)])
        return PoolScores(probs=probs, embeddings=embeddings, mc_probs=mc)

    def head_gradient_embeddings(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """BADGE embeddings: (p - onehot(argmax p)) ⊗ penultimate features, shape (n, k*d)."""
        if self.multi_label:
            raise NotSupported("BADGE gradient embeddings are defined for single-label "
                               "(softmax) classifiers only")
        with _scoring_mode(self.model, dropout=False):
            probs, _, penultimate = self._run(texts, batch_size, penultimate=True)
        assert penultimate is not None
        residual = probs.copy()
        residual[np.arange(len(probs)), probs.argmax(axis=1)] -= 1.0
        outer = residual[:, :, None] * penultimate[:, None, :]
        return outer.reshape(len(probs), -1).astype(np.float32)

    # -- internals ------------------------------------------------------------------------
    def _run(
        self, texts: Sequence[str], batch_size: int, *, penultimate: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        n = len(texts)
        hidden_size = int(unwrap(self.model).config.hidden_size)
        probs = np.zeros((n, self.num_labels), dtype=np.float32)
        embeddings = np.zeros((n, hidden_size), dtype=np.float32)
        features: np.ndarray | None = None
        token_ids = encode(self.tokenizer, texts, self.max_length)
        lengths = [len(ids) for ids in token_ids]
        pad_id = int(self.tokenizer.pad_token_id)  # type: ignore[arg-type]
        multiple = 8 if self.device.type == "cuda" else None
        replacements = self._scoring_weights()
        if replacements is not None and replacements.stale(self.model):
            replacements.build(self.model, lambda: self._calibrate(token_ids, pad_id, multiple))
        swapped = replacements.swapped(self.model) if replacements else nullcontext()
        with swapped, torch.inference_mode():
            for indices in sorted_batches(lengths, batch_size):
                batch = collate(token_ids, indices, pad_id, multiple).to(self.device)
                out = self._forward(batch, texts, capture_penultimate=penultimate)
                logits = out.logits.float()
                probs[indices] = (torch.sigmoid(logits) if self.multi_label
                                  else torch.softmax(logits, dim=-1)).cpu().numpy()
                embeddings[indices] = out.embeddings.cpu().numpy()
                if out.penultimate is not None:
                    if features is None:
                        features = np.zeros((n, out.penultimate.shape[-1]), dtype=np.float32)
                    features[indices] = out.penultimate.float().cpu().numpy()
        return probs, embeddings, features

    def _scoring_weights(self) -> ScoringWeights | None:
        """Int8 linears, or on a CPU float ones with the adapter merged; None: the model as is."""
        if self.scores_in_int8:
            return self._int8
        if self.device.type == "cpu" and self.adapted.config.kind in MERGED_KINDS:
            return self._merged
        return None

    def _calibrate(self, token_ids: list[list[int]], pad_id: int, multiple: int | None) -> None:
        """A float pass over a spread of the texts, while :class:`Int8Weights` records inputs."""
        if not token_ids:
            return
        step = max(1, len(token_ids) // CALIBRATION_TEXTS)
        chosen = list(range(0, len(token_ids), step))[:CALIBRATION_TEXTS]
        batch = collate(token_ids, chosen, pad_id, multiple).to(self.device)
        with torch.inference_mode(), self.precision.autocast():
            self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)

    def _forward(
        self, batch: Batch, texts: Sequence[str], *, capture_penultimate: bool = False
    ) -> _Outputs:
        captured: dict[str, torch.Tensor] = {}

        def keep_hidden(_m: nn.Module, _a: Any, output: Any) -> None:
            captured["hidden"] = output[0]

        def keep_features(_m: nn.Module, args: tuple[Any, ...]) -> None:
            captured["features"] = args[0]

        handles = [encoder_of(self.model).register_forward_hook(keep_hidden)]
        if capture_penultimate:
            linear = final_head_linear(self.model, self.num_labels)
            handles.append(linear.register_forward_pre_hook(keep_features))
        try:
            split = self.split_layer if self.layer_cache is not None else 0
            with self.precision.autocast():
                if split > 0:
                    logits = self._forward_from_cache(batch, texts, split)
                else:
                    logits = self.model(
                        input_ids=batch.input_ids, attention_mask=batch.attention_mask
                    ).logits
        finally:
            for handle in handles:
                handle.remove()
        return _Outputs(
            logits=logits,
            embeddings=mean_pool(captured["hidden"], batch.attention_mask),
            penultimate=captured.get("features"),
        )

    def _forward_from_cache(self, batch: Batch, texts: Sequence[str], split: int) -> torch.Tensor:
        hidden = self.lower_hidden(batch, texts, split)
        with layer_slice(self.model, split), encoder_input_override(self.model, hidden):
            return self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits

    def lower_hidden(self, batch: Batch, texts: Sequence[str], split: int) -> torch.Tensor:
        cache = self.layer_cache
        assert cache is not None
        lengths = batch.attention_mask.sum(dim=1).tolist()
        # int8 lower layers give (slightly) different hidden states: never mixed with float ones
        fingerprint = self.base_fingerprint + (":int8" if self.scores_in_int8 else "")
        keys = [
            cache.key(texts[i], fingerprint, split, self.max_length)
            for i in batch.indices
        ]
        rows: list[torch.Tensor | None] = [cache.get(key) for key in keys]
        missing = [row for row, found in enumerate(rows) if found is None]
        if missing:
            encoder = encoder_of(self.model)
            with layer_slice(self.model, 0, split):
                computed = encoder(
                    input_ids=batch.input_ids[missing], attention_mask=batch.attention_mask[missing]
                )[0]
            for position, row in enumerate(missing):
                value = computed[position, : int(lengths[row])]
                cache.put(keys[row], value)
                rows[row] = value
        width = batch.input_ids.shape[1]
        hidden = torch.zeros(
            (len(rows), width, rows[0].shape[-1]),  # type: ignore[union-attr]
            dtype=torch.float32,
            device=self.device,
        )
        for row, value in enumerate(rows):
            assert value is not None
            hidden[row, : value.shape[0]] = value.to(self.device, torch.float32)
        return hidden


@contextmanager
def _scoring_mode(model: nn.Module, *, dropout: bool) -> Iterator[None]:
    """Eval mode for scoring (dropout modules on for MC dropout); restore the previous mode.

    Scoring is also called mid-training (dev evaluation), when the model is in training mode.
    """
    was_training = model.training
    model.eval()
    if dropout:
        for module in model.modules():
            if isinstance(module, nn.Dropout):
                module.train()
    try:
        yield
    finally:
        model.train(was_training)
