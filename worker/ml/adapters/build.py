"""Put an adapter on a base classifier, freeze what must stay frozen, and group parameters.

The result, :class:`AdaptedModel`, knows which parameters are adapter, head and (hybrid or full
fine-tuning) base parameters, because each group gets its own learning rate and the artifact
saves each group differently.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn
from transformers import PreTrainedModel

from contract.adapter_config import AdapterConfig
from worker.ml.adapters.bottleneck import MODULE_NAME, BottleneckAdapters
from worker.ml.adapters.peft_kinds import wrap_with_peft
from worker.ml.architecture import encoder_layers, head_module_names, unwrap

PEFT_KINDS = ("lora", "ia3", "prompt")


@dataclass
class AdaptedModel:
    """A sequence classifier with its adapter, and its trainable parameters by group."""

    model: nn.Module
    config: AdapterConfig
    adapter_params: dict[str, nn.Parameter] = field(default_factory=dict)
    head_params: dict[str, nn.Parameter] = field(default_factory=dict)
    base_params: dict[str, nn.Parameter] = field(default_factory=dict)
    bottleneck: BottleneckAdapters | None = None

    @property
    def hf_model(self) -> PreTrainedModel:
        return unwrap(self.model)

    def trainable(self) -> dict[str, nn.Parameter]:
        return {**self.adapter_params, **self.head_params, **self.base_params}

    def trainable_count(self) -> int:
        return sum(p.numel() for p in self.trainable().values())

    def base_count(self) -> int:
        """Parameters of the base classifier without adapters (denominator of "% of base")."""
        adapters = {id(p) for p in self.adapter_params.values()}
        copies = {id(p) for n, p in self.model.named_parameters() if "modules_to_save" in n}
        return sum(p.numel() for p in self.model.parameters() if id(p) not in adapters | copies)

    def total_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def _head_param_names(model: PreTrainedModel) -> set[str]:
    names: set[str] = set()
    for module_name in head_module_names(model):
        module = model.get_submodule(module_name)
        names.update(f"{module_name}.{n}" for n, _ in module.named_parameters())
    return names


def _unfrozen_layer_params(model: PreTrainedModel, last_n: int) -> dict[str, nn.Parameter]:
    if last_n == 0:
        return {}
    layers = encoder_layers(model)
    chosen = {id(p) for layer in list(layers)[-last_n:] for p in layer.parameters()}
    return {name: p for name, p in model.named_parameters() if id(p) in chosen}


def build_adapted_model(model: PreTrainedModel, config: AdapterConfig) -> AdaptedModel:
    """Attach the configured adapter to a freshly loaded sequence classifier."""
    num_layers = len(encoder_layers(model))
    config.trained_layers(num_layers)  # validates layers / unfreeze_last_n against the depth
    if config.pooling == "mean":
        from worker.ml.pooling import install_mean_pooling

        install_mean_pooling(model)
    head_names = _head_param_names(model)
    if config.kind == "full":
        for param in model.parameters():
            param.requires_grad_(True)
        params = dict(model.named_parameters())
        return AdaptedModel(
            model=model,
            config=config,
            head_params={n: p for n, p in params.items() if n in head_names},
            base_params={n: p for n, p in params.items() if n not in head_names},
        )
    unfrozen = _unfrozen_layer_params(model, config.unfreeze_last_n)
    if config.kind == "bottleneck":
        return _build_bottleneck(model, config, head_names, unfrozen, num_layers)
    wrapped = wrap_with_peft(model, config)
    for param in unfrozen.values():
        param.requires_grad_(True)
    unfrozen_ids = {id(p) for p in unfrozen.values()}
    adapted = AdaptedModel(model=wrapped, config=config, base_params=unfrozen)
    for name, param in wrapped.named_parameters():
        if not param.requires_grad or id(param) in unfrozen_ids:
            continue
        group = adapted.head_params if "modules_to_save" in name else adapted.adapter_params
        group[name] = param
    return adapted


def _build_bottleneck(
    model: PreTrainedModel,
    config: AdapterConfig,
    head_names: set[str],
    unfrozen: dict[str, nn.Parameter],
    num_layers: int,
) -> AdaptedModel:
    for param in model.parameters():
        param.requires_grad_(False)
    adapters = BottleneckAdapters(config, model.config.hidden_size, num_layers)
    adapters.to(next(model.parameters()).device)
    model.add_module(MODULE_NAME, adapters)
    adapters.attach(model)
    params = dict(model.named_parameters())
    head = {n: p for n, p in params.items() if n in head_names}
    adapter = {n: p for n, p in params.items() if n.startswith(MODULE_NAME + ".")}
    for param in [*head.values(), *adapter.values(), *unfrozen.values()]:
        param.requires_grad_(True)
    return AdaptedModel(
        model=model,
        config=config,
        adapter_params=adapter,
        head_params=head,
        base_params=unfrozen,
        bottleneck=adapters,
    )
