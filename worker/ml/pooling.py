"""Mean pooling for the adapter's classification head, so it reads what the live head reads.

BERT-style sequence classifiers feed the classifier ``tanh(W_p · h_[CLS])`` (the pooler). The
live head is a logistic regression on the *mean of the last hidden states over the attention mask,
L2-normalised* (:func:`mean_pool`). With ``AdapterConfig.pooling="mean"`` the
pooler is replaced by :class:`MeanPooler`, which computes exactly that vector, so the classifier's
``logits = W · e + b`` equals the live head's logits when ``(W, b)`` are copied from it (LP-FT:
linear probe, then fine-tune). The replacement has no parameters; the attention mask reaches it
through a forward pre-hook on the encoder model.

Only models whose classifier reads a ``pooler`` (BERT and its relatives, MiniLM included) are
supported; others raise :class:`NotSupported` naming the class.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedModel

from contract.errors import ConfigError, NotSupported


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """L2-normalised mean of the hidden states over real (non-padding) tokens.

    Prompt tuning prepends virtual tokens; those leading positions are dropped first.
    """
    extra = hidden.shape[1] - attention_mask.shape[1]
    if extra > 0:
        hidden = hidden[:, extra:]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)
    return torch.nn.functional.normalize(pooled.float(), dim=-1)


class MeanPooler(nn.Module):
    """Mean of the hidden states over real tokens, L2-normalised (no parameters)."""

    def __init__(self) -> None:
        super().__init__()
        self.attention_mask: torch.Tensor | None = None

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        mask = self.attention_mask
        if mask is None or mask.shape[0] != hidden_states.shape[0]:
            mask = torch.ones(hidden_states.shape[:2], device=hidden_states.device)
        return mean_pool(hidden_states, mask).to(hidden_states.dtype)


def install_mean_pooling(model: PreTrainedModel) -> None:
    """Replace the pooler of a freshly loaded sequence classifier by :class:`MeanPooler`."""
    base = getattr(model, model.base_model_prefix, None)
    if base is None or getattr(base, "pooler", None) is None:
        raise NotSupported(
            f"pooling='mean' needs a model whose classifier reads a pooler (BERT family); "
            f"{type(model).__name__} has none — use pooling='cls'"
        )
    pooler = MeanPooler()
    base.pooler = pooler

    def keep_mask(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        mask = kwargs.get("attention_mask")
        if mask is None and len(args) > 1 and isinstance(args[1], torch.Tensor):
            mask = args[1]
        pooler.attention_mask = mask

    base.register_forward_pre_hook(keep_mask, with_kwargs=True)


def set_head_linear(linear: nn.Linear, weights: np.ndarray, bias: np.ndarray) -> None:
    """Copy a linear probe's ``(W (k, d), b (k,))`` into the classifier's final linear layer."""
    W = torch.as_tensor(np.asarray(weights), dtype=linear.weight.dtype)
    b = torch.as_tensor(np.asarray(bias), dtype=linear.weight.dtype)
    if tuple(W.shape) != tuple(linear.weight.shape) or tuple(b.shape) != (linear.out_features,):
        raise ConfigError(
            f"head init of shape {tuple(W.shape)}/{tuple(b.shape)} does not fit the classifier "
            f"{tuple(linear.weight.shape)}"
        )
    with torch.no_grad():
        linear.weight.copy_(W.to(linear.weight.device))
        if linear.bias is not None:
            linear.bias.copy_(b.to(linear.bias.device))


MEAN_POOLING_TYPES = frozenset({"bert"})
"""Model types whose sequence classifier reads ``<base>.pooler`` (checked: BERT, MiniLM)."""


def supports_mean_pooling(model: str) -> bool:
    """Whether ``pooling='mean'`` applies to this base (from its config, without the weights)."""
    from transformers import AutoConfig

    from worker.ml.models import resolve_model_path

    try:
        config = AutoConfig.from_pretrained(resolve_model_path(model))
    except (OSError, ValueError):
        return False
    return getattr(config, "model_type", "") in MEAN_POOLING_TYPES
