"""Houlsby-style bottleneck adapters (down → nonlinearity → up), serial or parallel.

peft has no bottleneck adapter, so this is our own small module. It is injected with forward
hooks on each layer's sub-layer output projection (BertSelfOutput.dense / BertOutput.dense and
their DistilBERT counterparts), which leaves the base model's module tree and state-dict keys
untouched: a frozen base stays loadable as-is and the adapter saves as its own safetensors.

- serial: ``y = proj(x); y = y + adapter(y)`` — inside the residual stream (Houlsby et al. 2019).
- parallel: ``y = proj(x) + adapter(h)`` where ``h`` is the sub-layer input, i.e. the residual
  stream (He et al. 2022).
The up-projection is zero-initialised, so a new adapter is the identity and training starts from
the base model's behaviour.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from contract.adapter_config import AdapterConfig
from worker.ml.architecture import encoder_layers, layer_layout, submodule

ACTIVATION_MODULES: dict[str, type[nn.Module]] = {
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
}
MODULE_NAME = "tapestry_bottleneck"


class BottleneckAdapter(nn.Module):
    """down-projection → activation → dropout → up-projection (zero-initialised)."""

    def __init__(self, hidden_size: int, size: int, activation: str, dropout: float) -> None:
        super().__init__()
        self.down = nn.Linear(hidden_size, size)
        self.activation = ACTIVATION_MODULES[activation]()
        self.dropout = nn.Dropout(dropout)
        self.up = nn.Linear(size, hidden_size)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.up(self.dropout(self.activation(self.down(hidden))))


def adapter_key(layer: int, position: str) -> str:
    return f"layer{layer}_{position}"


class BottleneckAdapters(nn.Module):
    """All bottleneck adapters of one model, plus the hooks that wire them in."""

    def __init__(self, config: AdapterConfig, hidden_size: int, num_layers: int) -> None:
        super().__init__()
        self.placement = config.placement
        self.adapters = nn.ModuleDict(
            {
                adapter_key(layer, position): BottleneckAdapter(
                    hidden_size, config.bottleneck_size, config.activation, config.dropout
                )
                for layer in config.adapter_layers(num_layers)
                for position in config.positions
            }
        )
        self._handles: list[RemovableHandle] = []
        self._residual: dict[str, torch.Tensor] = {}

    def attach(self, model: nn.Module) -> None:
        """Register the hooks on ``model``'s encoder layers (idempotent)."""
        self.detach()
        layers = encoder_layers(model)
        for key in self.adapters:
            layer_part, position = key.split("_", 1)
            layer = layers[int(layer_part.removeprefix("layer"))]
            layout = layer_layout(layer)
            entry_name = layout.attention_entry if position == "attention" else layout.ffn_entry
            proj_name = layout.attention_proj if position == "attention" else layout.ffn_proj
            proj = submodule(layer, proj_name)
            self._handles.append(proj.register_forward_hook(self._output_hook(key)))
            if self.placement == "parallel":
                entry = submodule(layer, entry_name)
                self._handles.append(
                    entry.register_forward_pre_hook(self._entry_hook(key), with_kwargs=True)
                )

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._residual.clear()

    def _entry_hook(self, key: str) -> Any:
        def hook(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            hidden = args[0] if args else next(iter(kwargs.values()))
            self._residual[key] = hidden

        return hook

    def _output_hook(self, key: str) -> Any:
        adapter = self.adapters[key]

        def hook(_module: nn.Module, _args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
            if self.placement == "serial":
                return output + adapter(output)
            residual = self._residual.pop(key)
            return output + adapter(residual)

        return hook
