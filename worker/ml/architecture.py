"""Find the parts of an encoder generically: base model, layer list, sub-layer projections, heads.

One table of attribute paths covers BERT, RoBERTa, ELECTRA, DeBERTa-v2/v3, MiniLM (BERT layout) and
DistilBERT. Anything else raises :class:`NotSupported` with the class name, instead of guessing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel

from contract.errors import NotSupported

LAYER_LIST_PATHS = ("encoder.layer", "transformer.layer")


@dataclass(frozen=True)
class LayerLayout:
    """Names, relative to one encoder layer, of the modules adapters attach to.

    ``*_entry`` receives the sub-layer input (the residual stream); ``*_proj`` is the last linear
    projection of the sub-layer, whose output is added to the residual stream.
    """

    attention_entry: str
    attention_proj: str
    ffn_entry: str
    ffn_proj: str


LAYOUTS = (
    LayerLayout("attention", "attention.output.dense", "intermediate", "output.dense"),  # BERT-like
    LayerLayout("attention", "attention.out_lin", "ffn", "ffn.lin2"),  # DistilBERT
)


def unwrap(model: nn.Module) -> PreTrainedModel:
    """Return the transformers model inside a peft wrapper (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    inner = get_base() if callable(get_base) else model
    if not isinstance(inner, PreTrainedModel):
        raise NotSupported(f"expected a transformers model, got {type(inner).__name__}")
    return inner


def encoder_of(model: nn.Module) -> nn.Module:
    """The bare encoder (BertModel, RobertaModel, ...) inside a task model."""
    inner = unwrap(model)
    base = inner.base_model
    return base if isinstance(base, nn.Module) else inner


def _get(module: nn.Module, path: str) -> nn.Module | None:
    current: object = module
    for part in path.split("."):
        current = getattr(current, part, None)
        if current is None:
            return None
    return current if isinstance(current, nn.Module) else None


def layer_list_path(model: nn.Module) -> tuple[nn.Module, str]:
    """(owner module, attribute name) of the encoder's ``nn.ModuleList`` of layers."""
    base = encoder_of(model)
    for path in LAYER_LIST_PATHS:
        found = _get(base, path)
        if isinstance(found, nn.ModuleList):
            owner_path, _, attr = path.rpartition(".")
            owner = _get(base, owner_path) if owner_path else base
            assert owner is not None
            return owner, attr
    raise NotSupported(
        f"cannot find the encoder layers of {type(unwrap(model)).__name__}; supported layouts: "
        f"{', '.join(LAYER_LIST_PATHS)} (BERT, RoBERTa, ELECTRA, DeBERTa, DistilBERT, MiniLM)"
    )


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    owner, attr = layer_list_path(model)
    layers = getattr(owner, attr)
    assert isinstance(layers, nn.ModuleList)
    return layers


def layer_layout(layer: nn.Module) -> LayerLayout:
    for layout in LAYOUTS:
        parts = (layout.attention_entry, layout.attention_proj, layout.ffn_entry, layout.ffn_proj)
        if all(_get(layer, name) is not None for name in parts):
            return layout
    raise NotSupported(f"unknown encoder layer layout {type(layer).__name__}")


def submodule(root: nn.Module, path: str) -> nn.Module:
    found = _get(root, path)
    if found is None:
        raise NotSupported(f"{type(root).__name__} has no sub-module {path!r}")
    return found


def linear_names(root: nn.Module, prefix: str = "") -> Iterator[str]:
    for name, module in root.named_modules():
        if isinstance(module, nn.Linear):
            yield f"{prefix}{name}" if prefix else name


def head_module_names(model: PreTrainedModel) -> list[str]:
    """Names of the classification-head modules outside the encoder (pooler included).

    These are always trainable and saved with every adapter: the pooler of BERT-style models may be
    absent from a checkpoint (then randomly initialised), so it must travel with the artifact.
    """
    prefix = model.base_model_prefix
    names = [
        name
        for name, child in model.named_children()
        if name != prefix
        and not name.startswith("tapestry_")
        and any(True for _ in child.parameters())
    ]
    base = getattr(model, prefix, None)
    pooler = getattr(base, "pooler", None) if base is not None else None
    if pooler is not None and any(True for _ in pooler.parameters()):
        names.append(f"{prefix}.pooler")  # a parameterless (mean) pooler has nothing to save
    if not names:
        raise NotSupported(f"{type(model).__name__} has no classification head modules")
    return names


def mlm_head(model: PreTrainedModel) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function mapping hidden states (..., H) to vocabulary logits with the model's MLM head.

    MLM heads are position-wise, so they can be applied to the gathered masked positions only.
    """
    for attr in ("cls", "lm_head", "lm_predictions"):
        head = getattr(model, attr, None)
        if isinstance(head, nn.Module):
            return head
    chains = (
        ("generator_predictions", "generator_lm_head"),  # ELECTRA generator
        ("vocab_transform", "activation", "vocab_layer_norm", "vocab_projector"),  # DistilBERT
    )
    for chain in chains:
        modules = [getattr(model, name, None) for name in chain]
        if all(isinstance(m, nn.Module) for m in modules):
            return nn.Sequential(*modules)  # type: ignore[arg-type]
    raise NotSupported(f"no known masked-LM head on {type(model).__name__}")
