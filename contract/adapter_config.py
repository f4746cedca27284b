"""Adapter configuration: one validated dataclass for every adapter kind.

Validation happens up front, in ``__post_init__``, so that a bad setting fails when the run is
configured, with a message naming the field and the allowed values, not minutes into training.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from contract.errors import ConfigError, NotSupported

AdapterKind = Literal["lora", "bottleneck", "ia3", "prompt", "full"]
KINDS: tuple[str, ...] = ("lora", "bottleneck", "ia3", "prompt", "full")
TARGETS = ("attention", "attention+mlp")
PLACEMENTS = ("serial", "parallel")
POSITIONS = ("attention", "ffn")
ACTIVATIONS = ("gelu", "relu", "tanh", "silu")
DEFAULT_UPPER_LAYERS = 2
"""Layers that get adapters when a project names none: the top two. Every round then trains and
scores from cached outputs of the frozen layers below (``tests/benchmarks/bench_upper_layers.py``
measures accuracy against round cost for the top 1, 2, 3 and all layers)."""
CACHEABLE_KINDS = ("lora", "ia3", "bottleneck")

REFUSED_KINDS = {
    "prefix": "prefix tuning is not supported: peft's prefix tuning fails on encoder "
    "classifiers with transformers 5 ('Model does not support past key values'); "
    "use kind='prompt' (prompt tuning) or kind='lora'",
    "prefix_tuning": "prefix tuning is not supported; use kind='prompt' or kind='lora'",
}


@dataclass
class AdapterConfig:
    """What is trained on top of the frozen base.

    ``kind``: "lora" (peft, low-rank updates of attention projections), "bottleneck" (our
    Houlsby-style down→act→up modules), "ia3" (peft, learned rescaling), "prompt" (peft prompt
    tuning: trainable virtual tokens), "full" (full fine-tuning baseline, nothing frozen).
    ``layers``: encoder layer indices that get adapters (None = all); adapters only in upper
    layers let pool scoring cache the frozen lower layers.
    ``unfreeze_last_n``: hybrid mode, also train the last n encoder blocks.
    """

    kind: AdapterKind = "lora"
    r: int = field(default=8, metadata={"help": "LoRA rank"})
    alpha: float = field(default=16, metadata={"help": "LoRA scaling numerator (alpha / r)"})
    dropout: float = field(default=0.1, metadata={"help": "dropout inside LoRA/bottleneck"})
    targets: Literal["attention", "attention+mlp"] = field(
        default="attention", metadata={"help": "LoRA/IA3 targets: Q/K/V/O, or also the MLP"}
    )
    layers: list[int] | None = field(default=None, metadata={"help": "layers; None = all"})
    bottleneck_size: int = field(default=16, metadata={"help": "bottleneck hidden size"})
    placement: Literal["serial", "parallel"] = "serial"
    positions: tuple[str, ...] = ("attention", "ffn")
    activation: str = "gelu"
    num_virtual_tokens: int = field(default=20, metadata={"help": "prompt tuning length"})
    unfreeze_last_n: int = field(default=0, metadata={"help": "hybrid: also train last n blocks"})
    pooling: Literal["cls", "mean"] = field(
        default="cls",
        metadata={"help": "what the head reads: the model's [CLS] pooler, or the mean-pooled, "
                  "L2-normalised embedding the live head uses (for LP-FT init)"},
    )

    def __post_init__(self) -> None:
        if self.kind in REFUSED_KINDS:
            raise NotSupported(REFUSED_KINDS[self.kind])
        _choice("kind", self.kind, KINDS)
        _positive_int("r", self.r)
        if not self.alpha > 0:
            raise ConfigError(f"alpha must be > 0 (LoRA scale is alpha / r), got {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        _choice("targets", self.targets, TARGETS)
        _positive_int("bottleneck_size", self.bottleneck_size)
        _choice("placement", self.placement, PLACEMENTS)
        self.positions = tuple(self.positions)
        if not self.positions or len(set(self.positions)) != len(self.positions):
            raise ConfigError(
                f"positions must be a non-empty subset of {POSITIONS} without repeats"
            )
        for position in self.positions:
            _choice("positions", position, POSITIONS)
        _choice("activation", self.activation, ACTIVATIONS)
        _positive_int("num_virtual_tokens", self.num_virtual_tokens)
        _choice("pooling", self.pooling, ("cls", "mean"))
        if not isinstance(self.unfreeze_last_n, int) or self.unfreeze_last_n < 0:
            raise ConfigError(f"unfreeze_last_n must be an int >= 0, got {self.unfreeze_last_n!r}")
        self._validate_layers()
        if self.kind == "full" and self.unfreeze_last_n:
            raise ConfigError("unfreeze_last_n has no meaning with kind='full' (all layers train)")

    def _validate_layers(self) -> None:
        if self.layers is None:
            return
        if self.kind in ("prompt", "full"):
            raise ConfigError(f"layers applies to lora, ia3 and bottleneck, not kind={self.kind!r}")
        layers = list(self.layers)
        if not layers:
            raise ConfigError("layers must be None (all layers) or a non-empty list of indices")
        if any(not isinstance(i, int) or i < 0 for i in layers) or len(set(layers)) != len(layers):
            raise ConfigError(f"layers must be distinct ints >= 0, got {layers}")
        self.layers = sorted(layers)

    def adapter_layers(self, num_layers: int) -> list[int]:
        """Layer indices that carry adapters, checked against the model's depth."""
        if self.layers is None:
            return list(range(num_layers))
        too_deep = [i for i in self.layers if i >= num_layers]
        if too_deep:
            raise ConfigError(f"layers {too_deep} do not exist: the model has {num_layers} layers")
        return list(self.layers)

    def trained_layers(self, num_layers: int) -> list[int]:
        """Encoder layers holding trained weights (adapters or unfrozen blocks), sorted."""
        if self.kind in ("full", "prompt"):
            return list(range(num_layers))
        if self.unfreeze_last_n > num_layers:
            raise ConfigError(
                f"unfreeze_last_n={self.unfreeze_last_n} exceeds the model's {num_layers} layers"
            )
        unfrozen = list(range(num_layers - self.unfreeze_last_n, num_layers))
        return sorted(set(self.adapter_layers(num_layers)) | set(unfrozen))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["positions"] = list(self.positions)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AdapterConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown adapter config keys {unknown}; known: {sorted(known)}")
        values = dict(data)
        if "positions" in values:
            values["positions"] = tuple(values["positions"])
        return cls(**values)


def _choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not allowed; choose one of {list(allowed)}")


def _positive_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name} must be an int >= 1, got {value!r}")


def with_default_layers(adapter: Mapping[str, Any], num_layers: int) -> dict[str, Any]:
    """``adapter`` with ``layers`` set to the top :data:`DEFAULT_UPPER_LAYERS` of a
    ``num_layers``-layer base when it names no layers (kinds that place adapters in layers only;
    an explicit ``layers``, even None, is kept)."""
    out = dict(adapter)
    if "layers" in out or out.get("kind", "lora") not in CACHEABLE_KINDS:
        return out
    out["layers"] = list(range(max(0, num_layers - DEFAULT_UPPER_LAYERS), num_layers))
    return out
