"""LoRA, IA3 and prompt tuning through peft, targeted by explicit module names.

Targets are listed as full module names (e.g. ``bert.encoder.layer.3.attention.self.query``) so
that the same code covers every supported architecture and a subset of layers, and the saved
``adapter_config.json`` is peft's own: ``PeftModel.from_pretrained`` reloads it unaided. The
classification head (and the pooler) go into ``modules_to_save`` so peft saves and reloads them.
"""

from __future__ import annotations

import warnings

from peft import (
    IA3Config,
    LoraConfig,
    PeftConfig,
    PeftModel,
    PromptTuningConfig,
    TaskType,
    get_peft_model,
)
from torch import nn
from transformers import PreTrainedModel

from contract.adapter_config import AdapterConfig
from contract.errors import NotSupported
from worker.ml.architecture import encoder_layers, head_module_names, layer_layout, linear_names

# peft (0.21) reads transformers' deprecated `is_gradient_checkpointing` when it wraps or loads a
# model, which printed a FutureWarning every adapter round; the message is peft's to fix.
warnings.filterwarnings(
    "ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning
)

KEY_NAMES = ("key", "k_lin", "key_proj")
VALUE_NAMES = ("value", "v_lin", "value_proj")


def _layer_prefixes(model: PreTrainedModel, layer_ids: list[int]) -> dict[int, str]:
    layers = encoder_layers(model)
    names = {id(module): name for name, module in model.named_modules()}
    return {i: names[id(layers[i])] for i in layer_ids}


def target_module_names(
    model: PreTrainedModel, config: AdapterConfig
) -> tuple[list[str], list[str]]:
    """(attention linears, MLP linears) of the selected layers, as full module names."""
    layers = encoder_layers(model)
    layer_ids = config.adapter_layers(len(layers))
    attention: list[str] = []
    mlp: list[str] = []
    for index, prefix in _layer_prefixes(model, layer_ids).items():
        layer = layers[index]
        attention_prefix = layer_layout(layer).attention_entry
        for name in linear_names(layer):
            full = f"{prefix}.{name}"
            in_attention = name == attention_prefix or name.startswith(attention_prefix + ".")
            (attention if in_attention else mlp).append(full)
    return attention, mlp


def _ffn_down_projections(model: PreTrainedModel, config: AdapterConfig) -> list[str]:
    layers = encoder_layers(model)
    prefixes = _layer_prefixes(model, config.adapter_layers(len(layers)))
    return [f"{prefix}.{layer_layout(layers[i]).ffn_proj}" for i, prefix in prefixes.items()]


def make_peft_config(model: PreTrainedModel, config: AdapterConfig) -> PeftConfig:
    """Translate our :class:`AdapterConfig` into peft's config for the given model."""
    head = head_module_names(model)
    attention, mlp = target_module_names(model, config)
    if config.kind == "lora":
        targets = attention + (mlp if config.targets == "attention+mlp" else [])
        return LoraConfig(
            task_type=TaskType.SEQ_CLS,
            r=config.r,
            lora_alpha=config.alpha,  # type: ignore[arg-type]
            lora_dropout=config.dropout,
            target_modules=targets,
            modules_to_save=head,
        )
    if config.kind == "ia3":
        kv = [n for n in attention if n.rsplit(".", 1)[-1] in KEY_NAMES + VALUE_NAMES]
        if not kv:
            raise NotSupported(f"no key/value projections found in {type(model).__name__}")
        ffn = _ffn_down_projections(model, config) if config.targets == "attention+mlp" else []
        return IA3Config(
            task_type=TaskType.SEQ_CLS,
            target_modules=kv + ffn,
            feedforward_modules=ffn,
            modules_to_save=head,
        )
    if config.kind == "prompt":
        return PromptTuningConfig(
            task_type=TaskType.SEQ_CLS,
            num_virtual_tokens=config.num_virtual_tokens,
            modules_to_save=head,
        )
    raise NotSupported(f"adapter kind {config.kind!r} is not a peft kind")


def wrap_with_peft(model: PreTrainedModel, config: AdapterConfig) -> nn.Module:
    """Return the peft model; base weights are frozen by peft, adapters + head trainable."""
    wrapped = get_peft_model(model, make_peft_config(model, config))
    assert isinstance(wrapped, PeftModel)
    return wrapped
