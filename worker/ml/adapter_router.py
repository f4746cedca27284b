"""Multi-adapter routing for inference: one resident base model, per-project adapters swapped on it.

Why: an inference worker serves many projects. Loading a base encoder per project would multiply
GPU memory by the number of projects; LoRA/IA3 adapters are a few hundred kilobytes each, so one
base carries many of them (peft multi-adapter: ``add_adapter`` + ``set_adapter``), and a request
only switches the active adapter.

How heads are handled: every project has its own classification head (and pooler), saved by peft
as ``modules_to_save``. peft keeps those as per-adapter *copies of the base's head*, which breaks
when projects have different label counts. So adapters are added to a plain :class:`PeftModel`
without ``modules_to_save``; each project's head modules are rebuilt at their saved shapes and
installed on the base (a module swap, no copy) before its forward pass.

Anything else (bottleneck adapters, prompt tuning, hybrid artifacts with unfrozen base blocks,
full fine-tuning) falls back to ``worker.ml.artifacts.load_artifact`` with its own small LRU.
Both LRUs evict the least recently used project; a base with no adapters left is dropped.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

SHARED_KINDS = ("lora", "ia3")
BASE_PREFIX = "base_model.model."


@dataclass(frozen=True)
class RouterLimits:
    """How much a worker keeps loaded; the LRU evicts beyond these counts."""

    max_adapters: int = 64
    max_fallback: int = 4
    batch_size: int = 32

    def __post_init__(self) -> None:
        for name in ("max_adapters", "max_fallback", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"RouterLimits.{name} must be an int >= 1, got {value!r}")


@dataclass
class Prediction:
    label_names: list[str]
    probabilities: np.ndarray  # (n, k) float32; multi-label: independent sigmoids
    shared_base: bool
    thresholds: np.ndarray | None = None
    """Multi-label artifacts: each label's decision threshold (None: single-label, softmax)."""


@dataclass
class _SharedBase:
    """One base encoder (a PeftModel without adapters' heads) and the adapters loaded on it."""

    model: Any  # peft.PeftModel
    template_heads: dict[str, nn.Module]
    adapters: set[str] = field(default_factory=set)


@dataclass
class _SharedAdapter:
    base_key: tuple[str, str, str]
    name: str
    heads: dict[str, nn.Module]
    tokenizer: Any
    label_names: list[str]
    max_length: int
    thresholds: np.ndarray | None = None


@dataclass
class _Fallback:
    classifier: Any  # worker.ml.classifier.TextClassifier


class AdapterRouter:
    """Predict with any project's artifact, keeping bases and adapters resident between calls."""

    def __init__(self, limits: RouterLimits | None = None, *, device: str = "auto") -> None:
        from worker.ml.runtime import resolve_device

        self.limits = limits or RouterLimits()
        self.device = resolve_device(device)
        self._bases: dict[tuple[str, str, str], _SharedBase] = {}
        self._adapters: OrderedDict[str, _SharedAdapter] = OrderedDict()
        self._fallbacks: OrderedDict[str, _Fallback] = OrderedDict()
        self._lock = threading.RLock()
        self._counter = 0
        self.hits = 0
        self.misses = 0

    # ----------------------------------------------------------------------------- public
    def predict(
        self, artifact: Path, texts: Sequence[str], *, cache_key: str | None = None
    ) -> Prediction:
        """Class probabilities of ``texts`` under the artifact's adapter.

        ``cache_key`` identifies the artifact's content (its sha256); the path alone is used when
        absent. Artifact directories are immutable, so the key never goes stale.
        """
        key = f"{Path(artifact).resolve()}|{cache_key or ''}"
        with self._lock:
            if key in self._adapters:
                self.hits += 1
                self._adapters.move_to_end(key)
                return self._predict_shared(self._adapters[key], texts)
            if key in self._fallbacks:
                self.hits += 1
                self._fallbacks.move_to_end(key)
                return self._predict_fallback(self._fallbacks[key], texts)
            self.misses += 1
            if is_shareable(Path(artifact)):
                loaded = self._load_shared(key, Path(artifact))
                return self._predict_shared(loaded, texts)
            fallback = self._load_fallback(key, Path(artifact))
            return self._predict_fallback(fallback, texts)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "bases": len(self._bases),
                "shared_adapters": len(self._adapters),
                "fallback_models": len(self._fallbacks),
                "hits": self.hits,
                "misses": self.misses,
            }

    # ----------------------------------------------------------------------------- shared
    def _load_shared(self, key: str, path: Path) -> _SharedAdapter:
        from peft import PeftConfig
        from safetensors.torch import load_file

        from worker.ml.artifacts import is_multi_label, read_meta
        from worker.ml.models import load_tokenizer

        meta = read_meta(path)
        thresholds = (np.asarray(meta["thresholds"], dtype=np.float64) if is_multi_label(meta)
                      else None)
        adapter_dir = path / "adapter"
        config = PeftConfig.from_pretrained(str(adapter_dir))
        base_key = (str(meta["base_model"]), str(meta["base_model_sha256"]), str(config.peft_type))
        head_names = list(dict.fromkeys(config.modules_to_save or []))
        config.modules_to_save = None  # heads are ours to swap (see the module docstring)
        config.task_type = None  # plain PeftModel: no classifier wrapping by peft
        config.inference_mode = True
        self._counter += 1
        name = f"a{self._counter}"
        shared = self._bases.get(base_key)
        if shared is None:
            shared = self._new_base(base_key, config, name)
        else:
            shared.model.add_adapter(name, config)
        try:
            state = load_file(str(adapter_dir / "adapter_model.safetensors"))
            heads = self._attach_weights(shared, name, state, head_names)
        except BaseException:
            self._drop_adapter(base_key, name)
            raise
        shared.adapters.add(name)
        shared.model.to(self.device)
        loaded = _SharedAdapter(
            base_key=base_key,
            name=name,
            heads={n: h.to(self.device).eval() for n, h in heads.items()},
            tokenizer=load_tokenizer(path / "tokenizer"),
            label_names=list(meta["label_names"]),
            max_length=int(meta["max_length"]),
            thresholds=thresholds,
        )
        self._adapters[key] = loaded
        self._evict()
        return loaded

    def _new_base(self, base_key: tuple[str, str, str], config: Any, name: str) -> _SharedBase:
        from peft import PeftModel

        from contract.errors import MLError
        from worker.ml.models import load_sequence_classifier, model_fingerprint

        base_path, sha256, _ = base_key
        if model_fingerprint(base_path) != sha256:
            raise MLError(
                f"base model {base_path} does not match the artifact's sha256 {sha256[:12]}…; "
                "the worker must see the same base files as the trainer"
            )
        model = load_sequence_classifier(base_path, ["label_0", "label_1"])
        model.eval()
        templates = {
            head: copy.deepcopy(model.get_submodule(head)) for head in _head_modules(model)
        }
        shared = _SharedBase(PeftModel(model, config, adapter_name=name), templates)
        self._bases[base_key] = shared
        log.info("inference: loaded base %s for %s adapters", base_path, base_key[2])
        return shared

    def _attach_weights(
        self,
        shared: _SharedBase,
        name: str,
        state: dict[str, torch.Tensor],
        head_names: list[str],
    ) -> dict[str, nn.Module]:
        from peft import set_peft_model_state_dict

        from contract.errors import MLError

        head_state: dict[str, dict[str, torch.Tensor]] = {}
        adapter_state: dict[str, torch.Tensor] = {}
        for key, tensor in state.items():
            head = _head_of(key, head_names)
            if head is None:
                adapter_state[key] = tensor
            else:
                relative = key[len(BASE_PREFIX) + len(head) + 1:]
                head_state.setdefault(head, {})[relative] = tensor
        result = set_peft_model_state_dict(shared.model, adapter_state, adapter_name=name)
        unexpected = list(getattr(result, "unexpected_keys", []))
        if unexpected:
            raise MLError(f"adapter weights do not fit the base: {unexpected[:5]}")
        missing = [k for k in getattr(result, "missing_keys", []) if f".{name}." in k]
        if missing:
            raise MLError(f"adapter weights are incomplete: {missing[:5]}")
        unknown = sorted(set(head_state) - set(shared.template_heads))
        if unknown:
            raise MLError(f"artifact has head modules {unknown} that the base model lacks")
        return {
            head: _rebuilt_head(shared.template_heads[head], tensors)
            for head, tensors in head_state.items()
        }

    def _predict_shared(self, loaded: _SharedAdapter, texts: Sequence[str]) -> Prediction:
        shared = self._bases[loaded.base_key]
        model = shared.model
        if model.active_adapter != loaded.name:  # switching walks every layer (~10 ms on MiniLM)
            model.set_adapter(loaded.name)
        inner = model.get_base_model()
        for head, module in shared.template_heads.items():
            _install(inner, head, loaded.heads.get(head, module))
        model.eval()
        probs = self._forward(model, loaded.tokenizer, texts, loaded.max_length,
                              sigmoid=loaded.thresholds is not None)
        if probs.shape[1] != len(loaded.label_names):
            raise RuntimeError("head output does not match the label set")  # a broken artifact
        return Prediction(loaded.label_names, probs, shared_base=True,
                          thresholds=loaded.thresholds)

    def _forward(self, model: Any, tokenizer: Any, texts: Sequence[str], max_length: int,
                 *, sigmoid: bool = False) -> np.ndarray:
        outputs: list[np.ndarray] = []
        size = self.limits.batch_size
        with torch.inference_mode():
            for start in range(0, len(texts), size):
                batch = tokenizer(
                    list(texts[start:start + size]),
                    padding=True,
                    truncation=True,
                    max_length=max_length,
                    return_tensors="pt",
                ).to(self.device)
                logits = model(**batch).logits.float()
                probs = torch.sigmoid(logits) if sigmoid else torch.softmax(logits, dim=-1)
                outputs.append(probs.cpu().numpy())
        if not outputs:
            return np.zeros((0, 0), dtype=np.float32)
        return np.concatenate(outputs).astype(np.float32)

    def _evict(self) -> None:
        while len(self._adapters) > self.limits.max_adapters:
            _, oldest = self._adapters.popitem(last=False)
            self._drop_adapter(oldest.base_key, oldest.name)

    def _drop_adapter(self, base_key: tuple[str, str, str], name: str) -> None:
        shared = self._bases.get(base_key)
        if shared is None:
            return
        shared.adapters.discard(name)
        if not shared.adapters:
            del self._bases[base_key]  # the last adapter: free the whole base
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            return
        if name in shared.model.peft_config:
            if shared.model.active_adapter == name:
                shared.model.set_adapter(next(iter(shared.adapters)))
            shared.model.delete_adapter(name)

    # ----------------------------------------------------------------------------- fallback
    def _load_fallback(self, key: str, path: Path) -> _Fallback:
        from worker.ml.artifacts import load_artifact

        fallback = _Fallback(load_artifact(path, device=str(self.device)))
        self._fallbacks[key] = fallback
        while len(self._fallbacks) > self.limits.max_fallback:
            self._fallbacks.popitem(last=False)
        return fallback

    def _predict_fallback(self, fallback: _Fallback, texts: Sequence[str]) -> Prediction:
        classifier = fallback.classifier
        if not texts:
            probs = np.zeros((0, classifier.num_labels), dtype=np.float32)
        else:
            probs = classifier.predict_proba(list(texts), batch_size=self.limits.batch_size)
        return Prediction(list(classifier.label_names), np.asarray(probs, np.float32), False,
                          thresholds=classifier.thresholds if classifier.multi_label else None)


def is_shareable(path: Path) -> bool:
    """LoRA/IA3 artifacts without unfrozen base blocks can share a resident base."""
    import json

    try:
        meta = json.loads((path / "tapestry.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        meta.get("kind") in SHARED_KINDS
        and not (path / "base_delta.safetensors").exists()
        and (path / "adapter" / "adapter_config.json").is_file()
        and (path / "adapter" / "adapter_model.safetensors").is_file()
    )


def _head_modules(model: nn.Module) -> list[str]:
    from worker.ml.architecture import head_module_names

    return head_module_names(model)  # type: ignore[arg-type]


def _head_of(key: str, head_names: list[str]) -> str | None:
    for head in sorted(head_names, key=len, reverse=True):
        if key.startswith(f"{BASE_PREFIX}{head}."):
            return head
    return None


def _rebuilt_head(template: nn.Module, tensors: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of ``template`` whose linear layers take the saved shapes, with the saved weights."""
    head = copy.deepcopy(template)
    for name, module in list(head.named_modules()):
        weight = tensors.get(f"{name}.weight" if name else "weight")
        if not isinstance(module, nn.Linear) or weight is None:
            continue
        if tuple(weight.shape) != tuple(module.weight.shape):
            resized = nn.Linear(weight.shape[1], weight.shape[0], bias=module.bias is not None)
            if name:
                _install(head, name, resized)
            else:
                head = resized
    head.load_state_dict(tensors, strict=True)
    return head


def _install(root: nn.Module, dotted: str, module: nn.Module) -> None:
    parent_name, _, attr = dotted.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, attr, module)
