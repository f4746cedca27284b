"""Scoring weights for a CPU (dynamic int8, or float with the adapter merged), swapped in
around a scoring pass.

Scoring a pool on a CPU spends most of its time in the encoder's linear layers. With dynamic
quantization (``torch.ao.nn.quantized.dynamic.Linear``: int8 weights, activations quantized per
call) those run on int8 kernels. The training model is never quantized: :class:`ScoringWeights`
builds, beside it, one int8 linear per linear layer of the encoder layers, with the adapter
merged in (peft's own ``merge`` on a copy of each LoRA / IA3 layer), and
:meth:`ScoringWeights.swapped` puts them in place only for the duration of a scoring pass. The
copies are rebuilt when a weight they were built from changes (an optimizer step, a warm start,
loading an artifact): the parameters' version counters tell. Float scoring on a CPU uses the same
machinery with merged float linears in place of the peft layers (no quantization).

Kept in floating point: the embeddings, the pooler and the classification head, and everything
outside the encoder layers (a bottleneck adapter's own modules among them; its hooks on a
projection are carried over to that projection's int8 replacement).

Activations are quantized per call, i.e. over the whole padded batch, so an item's int8 scores
depend slightly on the other items of its batch; ``tests/worker/ml/test_quantize.py`` measures the
agreement with fp32 on a real dev set.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig

from worker.ml.architecture import encoder_layers

SMOOTHING_ALPHA = 0.8
"""SmoothQuant's migration strength (0: none, 1: all of the activation range into the weights).
Measured on R8 (MiniLM + LoRA, 500 texts): argmax agreement with fp32 98.4 % without smoothing,
98.2 % at 0.7, 99.0 % at 0.8, 99.2 % at 0.9; mean embedding cosine 0.9953 -> 0.9984 at 0.8."""
CALIBRATION_TEXTS = 32
"""Texts of the scoring call run in float to calibrate the smoothing when the weights changed."""

HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
)


@lru_cache(maxsize=1)
def cpu_has_vnni() -> bool:
    """Whether the CPU multiplies u8 x s8 into int32 directly (AVX512-VNNI / AVX-VNNI)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            flags = handle.read()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


class Int8Linear(DynamicLinear):  # type: ignore[misc]
    """A dynamic int8 linear; activations use the full 8 bits where the CPU has VNNI.

    PyTorch quantizes activations to 7 bits (``reduce_range``) so that the u8 x s8 pair sums of
    pre-VNNI kernels cannot saturate int16; with VNNI they accumulate in int32, and the eighth bit
    halves the activation rounding error (measured: argmax agreement with fp32 98.0 % instead of
    96.8 % on R8 with every encoder linear quantized).
    """

    reduce_range = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        packed = self._packed_params._packed_params
        y = torch.ops.quantized.linear_dynamic(x, packed, reduce_range=self.reduce_range)
        return y.to(x.dtype)


def int8_supported(device: torch.device) -> bool:
    """Dynamic int8 linears run on CPUs with a quantized engine (fbgemm / x86 / qnnpack)."""
    return device.type == "cpu" and torch.backends.quantized.engine != "none"


@dataclass(frozen=True)
class _Site:
    """One linear layer of the encoder: where it hangs and the module found there."""

    parent: nn.Module
    name: str
    module: nn.Module


def _is_tuner_layer(module: nn.Module) -> bool:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return isinstance(module, BaseTunerLayer)


def _find_sites(root: nn.Module) -> list[_Site]:
    """Linear layers below ``root``; a peft layer (base linear + adapter) counts as one."""
    sites: list[_Site] = []
    for name, child in root.named_children():
        if _is_tuner_layer(child):
            base = child.get_base_layer()  # type: ignore[operator]
            if isinstance(base, nn.Linear):
                sites.append(_Site(root, name, child))
        elif type(child) is nn.Linear:
            sites.append(_Site(root, name, child))
        else:
            sites.extend(_find_sites(child))
    return sites


def _merged_linear(module: nn.Module) -> nn.Linear:
    """A float linear equal to ``module`` in eval mode: the adapter merged into a copy."""
    if _is_tuner_layer(module):
        merged = copy.deepcopy(module)
        with torch.no_grad():
            merged.merge(safe_merge=False)  # type: ignore[operator]
        base = merged.get_base_layer()  # type: ignore[operator]
        assert isinstance(base, nn.Linear)
        return base
    assert isinstance(module, nn.Linear)
    return copy.deepcopy(module)


def quantize_linear(linear: nn.Linear, *, per_channel: bool = True) -> Int8Linear:
    """An int8 dynamic linear from a float one (the float one is left as it was).

    Per-channel weight scales (one per output row) by default: per-tensor ones lost 3 points of
    argmax agreement with fp32 on R8 (94.8 % against 98.0 %) for no measurable speed.
    """
    source = copy.copy(linear)  # from_float reads .qconfig; keep it off the model's module
    qconfig = per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig
    source.qconfig = qconfig  # type: ignore[assignment]
    with warnings.catch_warnings():  # torch deprecates quantized tensors for a future release
        warnings.simplefilter("ignore", UserWarning)
        quantized = Int8Linear.from_float(source.float().cpu())
    quantized.reduce_range = not cpu_has_vnni()
    return quantized


class SmoothedInt8Linear(nn.Module):
    """``int8_linear(x / s)`` where the int8 weights hold ``W * s`` (SmoothQuant)."""

    inverse_scale: torch.Tensor

    def __init__(self, inverse_scale: torch.Tensor, linear: Int8Linear) -> None:
        super().__init__()
        self.register_buffer("inverse_scale", inverse_scale)
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x * self.inverse_scale)  # type: ignore[no-any-return]


def smooth_and_quantize(
    linear: nn.Linear, input_absmax: torch.Tensor, *, alpha: float = SMOOTHING_ALPHA
) -> SmoothedInt8Linear:
    """Move input-channel outliers into the weights, then quantize (SmoothQuant).

    Activations are quantized with one scale per call, so a few large input channels (BERT's
    LayerNorm outputs have some) leave little resolution for the rest. With
    ``s_j = max|x_j|^alpha / max|W_:j|^(1 - alpha)``, ``x / s`` is flat across channels and
    ``W * s`` absorbs the range, where the per-row weight scales handle it well.
    """
    weight_absmax = linear.weight.detach().abs().amax(dim=0).float().clamp_min(1e-5)
    scale = input_absmax.float().clamp_min(1e-5).pow(alpha) / weight_absmax.pow(1 - alpha)
    smoothed = copy.deepcopy(linear)
    with torch.no_grad():
        smoothed.weight.mul_(scale.to(smoothed.weight.dtype))
    return SmoothedInt8Linear((1.0 / scale).cpu(), quantize_linear(smoothed))


def _signature(sites: list[_Site]) -> tuple[tuple[int, int, int], ...]:
    """Identity and version of every weight the replacements were built from."""
    return tuple(
        (id(p), p._version, p.data_ptr()) for site in sites for p in site.module.parameters()
    )


FLOAT_DOWN_PROJECTIONS = """Without VNNI, the down projections (more inputs than outputs: the
feed-forward block's second linear, which reads the GELU's heavy-tailed output) stay in float.
There activations are quantized to 7 bits (``reduce_range``), and on the default round model
int8 agreed with fp32 on 98.0 % of R8 argmax labels with every linear in int8 against 99.8 %
with the down projections in float (an AVX2-only CPU, 2026-12-03); with VNNI every linear is
int8 (99.4 %). The down projections are a third of a BERT layer's linear FLOPs."""


class ScoringWeights:
    """Scoring replacements for a model's encoder-layer linears, rebuilt when the weights change.

    ``int8=True``: every linear of the encoder layers becomes an int8 one (adapter merged; on a CPU
    without VNNI the down projections stay in float, :data:`FLOAT_DOWN_PROJECTIONS`);
    :meth:`build` runs a float calibration pass (given by the caller) to record each linear's
    largest input per channel, for the smoothing of :func:`smooth_and_quantize`.
    ``int8=False``: only the peft (LoRA / IA3) layers are replaced, by float linears with the
    adapter merged: the same function without the adapter's extra matmuls and additions, which
    cost a quarter of a MiniLM forward on a CPU (measured with cProfile, batch 64 x 256 tokens).
    """

    def __init__(self, *, int8: bool, alpha: float = SMOOTHING_ALPHA) -> None:
        self.int8 = int8
        self.alpha = alpha
        self.builds = 0
        self._sites: list[_Site] = []
        self._replacements: list[nn.Module] = []
        self._signature: tuple[tuple[int, int, int], ...] | None = None
        self._model_id: int | None = None

    def _find(self, model: nn.Module) -> None:
        if self._model_id != id(model) or not self._sites:
            sites = [s for layer in encoder_layers(model) for s in _find_sites(layer)]
            self._sites = sites if self.int8 else [s for s in sites if _is_tuner_layer(s.module)]
            self._model_id = id(model)
            self._signature = None

    def stale(self, model: nn.Module) -> bool:
        """Whether the replacements are missing or older than the model's weights."""
        self._find(model)
        return _signature(self._sites) != self._signature

    def build(self, model: nn.Module, calibrate: Callable[[], None]) -> None:
        """(Re)build the replacements; ``calibrate`` runs ``model`` in float on a few texts."""
        self._find(model)
        if not self.int8:
            self._install([_merged_linear(site.module) for site in self._sites])
            return
        absmax: dict[int, torch.Tensor] = {}

        def recorder(index: int) -> Callable[..., None]:
            def record(_module: nn.Module, args: tuple[Any, ...]) -> None:
                x = args[0].detach()
                seen = x.reshape(-1, x.shape[-1]).abs().amax(dim=0).float()
                known = absmax.get(index)
                absmax[index] = seen if known is None else torch.maximum(known, seen)

            return record

        handles = [
            site.module.register_forward_pre_hook(recorder(i)) for i, site in enumerate(self._sites)
        ]
        try:
            calibrate()
        finally:
            for handle in handles:
                handle.remove()
        replacements: list[nn.Module] = []
        float_down = not cpu_has_vnni()
        for i, site in enumerate(self._sites):
            merged = _merged_linear(site.module)
            if float_down and merged.in_features > merged.out_features:
                replacements.append(merged)  # see FLOAT_DOWN_PROJECTIONS
                continue
            seen = absmax.get(i)
            replacements.append(
                quantize_linear(merged)
                if seen is None
                else smooth_and_quantize(merged, seen, alpha=self.alpha)
            )
        self._install(replacements)

    def _install(self, replacements: list[nn.Module]) -> None:
        for site, replacement in zip(self._sites, replacements, strict=True):
            for attr in HOOK_DICTS:  # e.g. a bottleneck adapter hooked onto this projection
                setattr(replacement, attr, getattr(site.module, attr))
        self._replacements = replacements
        self._signature = _signature(self._sites)
        self.builds += 1

    @contextmanager
    def swapped(self, model: nn.Module) -> Iterator[None]:
        """Put the replacements in ``model`` for the duration of the block (build first)."""
        if self.stale(model):
            raise RuntimeError("scoring weights are missing or stale: call build() first")
        for site, replacement in zip(self._sites, self._replacements, strict=True):
            site.parent._modules[site.name] = replacement
        try:
            yield
        finally:
            for site in self._sites:
                site.parent._modules[site.name] = site.module
