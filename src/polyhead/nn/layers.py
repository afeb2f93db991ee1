"""Linear layers for one network or an ensemble of K networks evaluated as one.

Ensemble inputs are member-major, ``(K, batch, features)``.

* :class:`PackedLinear`: K fully independent layers, ``(K, in, out)`` weights, one batched
  matrix product (packed ensembles: each member its own initialisation).
* :class:`BatchEnsembleLinear`: K layers that share one weight matrix and differ by a
  per-member input scaling ``r``, output scaling ``s`` and bias (BatchEnsemble, Wen et al.
  2020, with TabM's initialisation, Gorishniy et al. 2025: the first layer's ``r`` random
  signs, every other scaling one, every member's bias the same). K members cost one weight
  matrix: the sharing is also a strong regulariser on small tables.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn


class PackedLinear(nn.Module):
    """K independent ``Linear(in_features, out_features)`` layers applied with one ``baddbmm``.

    Each member is initialised as ``nn.Linear`` would be, independently.
    """

    def __init__(self, k: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.k, self.in_features, self.out_features = k, in_features, out_features
        self.weight = nn.Parameter(torch.empty(k, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(k, 1, out_features))
        bound = 1 / math.sqrt(in_features) if in_features else 0.0
        # nn.Linear's default: kaiming_uniform(a=sqrt(5)) == U(-1/sqrt(in), 1/sqrt(in))
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)

    def extra_repr(self) -> str:
        return f"members={self.k}, in_features={self.in_features}, out_features={self.out_features}"


class BatchEnsembleLinear(nn.Module):
    """K linear layers sharing one weight matrix: ``((x * r) @ W) * s + bias`` per member."""

    def __init__(self, k: int, in_features: int, out_features: int, first: bool = False) -> None:
        super().__init__()
        self.k, self.in_features, self.out_features = k, in_features, out_features
        bound = 1 / math.sqrt(in_features) if in_features else 0.0
        self.weight = nn.Parameter(torch.empty(in_features, out_features).uniform_(-bound, bound))
        r = torch.ones(k, 1, in_features)
        if first:  # TabM: random signs diversify the members from the first step
            r = r.bernoulli_(0.5).mul_(2).sub_(1)
        self.r = nn.Parameter(r)
        self.s = nn.Parameter(torch.ones(k, 1, out_features))
        self.bias = nn.Parameter(torch.empty(1, 1, out_features).uniform_(-bound, bound)
                                 .expand(k, 1, out_features).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.bias, (x * self.r) @ self.weight, self.s)

    def extra_repr(self) -> str:
        return (f"members={self.k}, in_features={self.in_features}, out_features={self.out_features}, "
                "shared weights")


LinearFactory = Callable[[int, int, int], nn.Module]


def linear_factory(ensemble: str, k: int) -> LinearFactory:
    """``make(in_features, out_features, index)``: the linear layer of one network (k=1), of a
    packed ensemble or of a batch ensemble (``index`` 0 is the first layer of a trunk)."""
    if k == 1:
        return lambda i, o, index: nn.Linear(i, o)
    if ensemble == "packed":
        return lambda i, o, index: PackedLinear(k, i, o)
    if ensemble == "batch":
        return lambda i, o, index: BatchEnsembleLinear(k, i, o, first=index == 0)
    raise ValueError(f"unknown ensemble {ensemble!r}")
