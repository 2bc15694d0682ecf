"""The classifier's feature: how an encoder's hidden layers become one vector per text.

Three choices, all config options of ``model.classifier`` (the defaults give mean pooling of the last layer):

- ``pooling``: ``mean`` | ``cls`` | ``max`` | ``attention`` (a learned query scores every token). Padding never
  counts: mean and max read only the tokens that the attention mask keeps, attention gives padding zero weight.
- ``layer_mix: scalar``, the *parametrized feature*: ELMo's learned scalar mix (Peters et al., 2018), a
  softmax-weighted sum over every hidden layer (embeddings included) times a learned scale, feeds the pooling.
- ``top_layers: k`` (> 1), *deep information propagation*: the last k layers are pooled one by one and combined,
  by ``combine: concat`` (k x hidden features) or ``combine: mix`` (a learned softmax-weighted sum).

Every learned value (mix weights, scale, attention query) lives in ``FeatureExtractor``; the classifier saves its
state beside the head, so a student or teacher loaded from a round's folder computes the same feature. Adam moves
each of them by about the learning rate per step: at a fine-tuning rate (1e-4) and a few dozen steps a mix stays
near its start, so ``feature_lr_scale`` gives them a rate of their own (x the optimizer's).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from alpaca_lightning.errors import AlpacaError
from alpaca_lightning.models.base import mean_pool

POOLINGS = ("mean", "cls", "max", "attention")
LAYER_MIXES = ("last", "scalar")
COMBINES = ("concat", "mix")


@dataclass(frozen=True)
class FeatureSpec:
    pooling: str = "mean"
    layer_mix: str = "last"
    top_layers: int = 1
    combine: str = "concat"

    def check(self, num_hidden_layers: int) -> None:
        """Clear errors for names and sizes that no encoder could serve."""
        for key, value, allowed in (("pooling", self.pooling, POOLINGS), ("layer_mix", self.layer_mix, LAYER_MIXES),
                                    ("combine", self.combine, COMBINES)):
            if value not in allowed:
                raise AlpacaError(f"model.classifier.{key} must be one of {allowed}, got '{value}'.")
        if not 1 <= self.top_layers <= num_hidden_layers:
            raise AlpacaError(f"model.classifier.top_layers={self.top_layers}, but the encoder has "
                              f"{num_hidden_layers} layers: choose 1 to {num_hidden_layers}.")
        if self.layer_mix == "scalar" and self.top_layers > 1:
            raise AlpacaError("model.classifier.layer_mix=scalar already mixes every layer; it cannot be combined "
                              "with top_layers > 1. Set one of them (top_layers=1 or layer_mix=last).")

    @property
    def reads_all_layers(self) -> bool:
        """Whether the encoder must return every hidden layer (costs memory), not only the last."""
        return self.layer_mix == "scalar" or self.top_layers > 1

    def output_size(self, hidden_size: int) -> int:
        return hidden_size * self.top_layers if self.combine == "concat" else hidden_size

    def to_dict(self) -> dict:
        return asdict(self)


class ScalarMix(torch.nn.Module):
    """gamma * sum_j softmax(w)_j * x_j over same-shaped tensors; starts as the plain average (w = 0, gamma = 1)."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.weights = torch.nn.Parameter(torch.zeros(count))
        self.gamma = torch.nn.Parameter(torch.ones(()))

    def forward(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(tensors) != len(self.weights):
            raise ValueError(f"ScalarMix over {len(self.weights)} tensors got {len(tensors)}.")
        shares = torch.softmax(self.weights.float(), dim=0).to(tensors[0].dtype)
        return self.gamma.to(tensors[0].dtype) * sum(share * t for share, t in zip(shares, tensors))

    def shares(self) -> list[float]:
        return torch.softmax(self.weights.detach().float(), dim=0).tolist()


class AttentionPool(torch.nn.Module):
    """A softmax over the kept tokens of their scaled dot product with one learned query vector."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.query = torch.nn.Parameter(torch.randn(hidden_size) / math.sqrt(hidden_size))

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        scores = hidden @ self.query.to(hidden.dtype) / math.sqrt(hidden.shape[-1])
        scores = scores.float().masked_fill(attention_mask == 0, torch.finfo(torch.float32).min)
        weights = torch.softmax(scores, dim=1).to(hidden.dtype)
        return (weights.unsqueeze(-1) * hidden).sum(1)


def max_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The per-dimension maximum over the kept tokens (padding filled with the dtype's lowest value)."""
    kept = attention_mask.unsqueeze(-1).bool()
    return hidden.masked_fill(~kept, torch.finfo(hidden.dtype).min).max(dim=1).values


class FeatureExtractor(torch.nn.Module):
    """Hidden layers (embeddings first, as transformers returns them) and the attention mask -> features."""

    def __init__(self, spec: FeatureSpec, hidden_size: int, num_hidden_layers: int) -> None:
        super().__init__()
        spec.check(num_hidden_layers)
        self.spec = spec
        self.layer_mix = ScalarMix(num_hidden_layers + 1) if spec.layer_mix == "scalar" else None
        self.top_mix = ScalarMix(spec.top_layers) if spec.top_layers > 1 and spec.combine == "mix" else None
        self.attention = AttentionPool(hidden_size) if spec.pooling == "attention" else None

    def forward(self, hidden_states: Sequence[torch.Tensor], attention_mask: torch.Tensor) -> torch.Tensor:
        if self.layer_mix is not None:
            layers = [self.layer_mix(hidden_states)]
        else:
            layers = list(hidden_states[-self.spec.top_layers:])
        pooled = [self.pool(hidden, attention_mask) for hidden in layers]
        if len(pooled) == 1:
            return pooled[0]
        return torch.cat(pooled, dim=-1) if self.top_mix is None else self.top_mix(pooled)

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.spec.pooling == "cls":
            return hidden[:, 0]
        if self.spec.pooling == "max":
            return max_pool(hidden, attention_mask)
        if self.attention is not None:
            return self.attention(hidden, attention_mask)
        return mean_pool(hidden, attention_mask)

    def learned_shares(self) -> dict[str, float]:
        """The mixes' current softmax weights, by name, for the training log."""
        out = {}
        for name, mix in (("layer_mix", self.layer_mix), ("top_mix", self.top_mix)):
            if mix is not None:
                out.update({f"{name}/{i}": share for i, share in enumerate(mix.shares())})
                out[f"{name}/gamma"] = float(mix.gamma.detach())
        return out
