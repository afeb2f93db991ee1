"""Trunk and heads: ``forward`` returns ``{task: raw output}``.

One module covers every shape of network polyhead fits:

* an input block (:mod:`polyhead.nn.inputs`) shared by every member;
* a shared MLP trunk, or a mixture of experts (MMoE: Ma et al., KDD 2018: several expert MLPs
  and, per task, a softmax gate that weighs them, for tasks that pull in different directions);
* optional task-specific layers (``head_hidden``) before each task's output layer;
* the output layers: one linear map for all tasks at once, split per task (as cheap for 174
  binary tasks as for one), or one per task after task-specific layers.

With ``k > 1`` every linear layer is an ensemble layer (:mod:`polyhead.nn.layers`): packed
(independent members) or batch (shared weights), inputs ``(K, batch, features)``, outputs
``(K, batch, width)``. A 2-D input is given to every member (prediction).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from .inputs import InputBlock
from .layers import LinearFactory, linear_factory
from .names import ACTIVATION_NAMES, NORM_NAMES

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh, "elu": nn.ELU,
}
NORMS = NORM_NAMES
assert tuple(ACTIVATIONS) == ACTIVATION_NAMES


def mlp_layers(in_features: int, hidden: Sequence[int], activation: str, dropout: float,
               norm: str | None, make: LinearFactory, first_index: int = 0) -> tuple[list[nn.Module], int]:
    """``[linear -> norm -> activation -> dropout] * len(hidden)`` and the output width."""
    layers: list[nn.Module] = []
    width = in_features
    for i, size in enumerate(hidden):
        layers.append(make(width, size, first_index + i))
        if norm == "layer":
            layers.append(nn.LayerNorm(size))
        elif norm == "batch":
            layers.append(nn.BatchNorm1d(size))
        layers.append(ACTIVATIONS[activation]())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = size
    return layers, width


class Trunk(nn.Sequential):
    """``[linear -> norm -> activation -> dropout] * len(hidden)``; ``out_features`` is its width."""

    out_features: int

    def __init__(self, in_features: int, hidden: Sequence[int], activation: str = "relu",
                 dropout: float = 0.0, norm: str | None = None,
                 make: LinearFactory | None = None, first_index: int = 0) -> None:
        layers, width = mlp_layers(in_features, hidden, activation, dropout, norm,
                                   make or linear_factory("packed", 1), first_index)
        super().__init__(*layers)
        self.out_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # .forward directly: a tiny net's step is dominated by per-call overhead, and
        # Module.__call__'s hook machinery costs as much as a small matmul
        for layer in self:
            x = layer.forward(x)
        return x


class MMoE(nn.Module):
    """Multi-gate mixture of experts: per task, a softmax gate over the experts' outputs."""

    out_features: int

    def __init__(self, in_features: int, tasks: Sequence[str], n_experts: int,
                 hidden: Sequence[int], activation: str, dropout: float, norm: str | None,
                 make: LinearFactory) -> None:
        super().__init__()
        experts = [Trunk(in_features, hidden, activation, dropout, norm, make)
                   for _ in range(n_experts)]
        self.experts = nn.ModuleList(experts)
        self.gates = nn.ModuleDict({t: make(in_features, n_experts, len(hidden)) for t in tasks})
        self.out_features = experts[0].out_features

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs = torch.stack([e.forward(x) for e in self.experts], dim=-1)  # (..., width, E)
        return {t: (outputs * torch.softmax(g.forward(x), dim=-1).unsqueeze(-2)).sum(-1)
                for t, g in self.gates.items()}


class HeadOutputs(dict):  # type: ignore[type-arg]
    """``{task: raw output}``, plus the fused output layer's whole tensor (``fused``) and each
    task's columns in it (``spans``), so a block of tasks is one slice instead of a
    concatenation of many."""

    fused: torch.Tensor | None = None
    spans: dict[str, tuple[int, int]] = {}


class MultiTaskModule(nn.Module):
    """Input block, trunk (or experts), optional task layers, and one output per task.

    Parameters
    ----------
    inputs : InputBlock or int
        The input block, or the encoded width (an identity input block).
    heads : mapping of str to int
        Task name -> number of raw outputs (as each task's kind says).
    hidden, activation, dropout, norm
        The trunk's shape.
    k : int, default=1
        Ensemble members; ``ensemble`` "packed" (independent) or "batch" (shared weights).
    head_hidden : sequence of int, default=()
        Task-specific layers before each task's output layer.
    experts : int, default=0
        0: one shared trunk; N: N expert trunks mixed per task by gates (MMoE).
    fused : bool, default=True
        One output layer for every task at once (when there are no task-specific layers);
        False keeps one layer per task (the layout of model files of format 1).
    """

    def __init__(self, inputs: InputBlock | int, heads: Mapping[str, int],
                 hidden: Sequence[int] = (), activation: str = "relu", dropout: float = 0.0,
                 norm: str | None = None, k: int = 1, ensemble: str = "packed",
                 head_hidden: Sequence[int] = (), experts: int = 0, fused: bool = True) -> None:
        super().__init__()
        if k > 1 and norm == "batch":
            raise ValueError("norm='batch' is not available with an ensemble; use 'layer'")
        self.inputs = inputs if isinstance(inputs, InputBlock) else InputBlock(int(inputs))
        self.k = k
        self.head_sizes = {name: int(dim) for name, dim in heads.items()}
        make = linear_factory(ensemble, k)
        width_in = int(self.inputs.out_features)
        self.experts: MMoE | None = None
        if experts:
            self.experts = MMoE(width_in, list(heads), experts, hidden, activation, dropout, norm, make)
            self.trunk = Trunk(width_in, (), make=make)
            width: int = self.experts.out_features
        else:
            self.trunk = Trunk(width_in, hidden, activation, dropout, norm, make)
            width = self.trunk.out_features
        depth = len(hidden)
        self.task_layers = nn.ModuleDict({
            name: Trunk(width, head_hidden, activation, dropout, norm, make, first_index=depth)
            for name in heads} if head_hidden else {})
        per_task = bool(head_hidden) or self.experts is not None or not fused
        last = int(head_hidden[-1]) if head_hidden else int(width)
        self.fused = not per_task
        offsets = [0]
        for dim in self.head_sizes.values():
            offsets.append(offsets[-1] + dim)
        self.spans = {name: (offsets[i], offsets[i + 1]) for i, name in enumerate(self.head_sizes)}
        self.out: nn.Module = nn.Identity()
        if self.fused:
            self.out = make(last, sum(self.head_sizes.values()), depth + len(head_hidden))
            self.heads = nn.ModuleDict()
        else:
            self.heads = nn.ModuleDict({name: make(last, dim, depth + len(head_hidden))
                                        for name, dim in self.head_sizes.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.inputs.forward(x)
        if self.k > 1 and h.dim() == 2:
            h = h.unsqueeze(0).expand(self.k, -1, -1)
        if self.experts is not None:
            shared = None
            per_task = self.experts.forward(h)
        else:
            shared = self.trunk.forward(h)
            per_task = None
        if self.fused:
            assert shared is not None
            whole = self.out.forward(shared)
            parts = torch.split(whole, list(self.head_sizes.values()), dim=-1)
            result = HeadOutputs(zip(self.head_sizes, parts, strict=True))
            result.fused, result.spans = whole, self.spans
            return result
        out = {}
        for name, head in self.heads.items():
            z = per_task[name] if per_task is not None else shared
            assert z is not None
            if self.task_layers:
                z = self.task_layers[name].forward(z)
            out[name] = head.forward(z)
        return out

    @torch.no_grad()
    def init_head_bias(self, biases: Mapping[str, Sequence[float]]) -> None:
        """Start each named task's output bias (in every member) at the given values."""
        start = 0
        for name, size in self.head_sizes.items():
            layer = self.out if self.fused else self.heads[name]
            offset = start if self.fused else 0
            target = layer.bias
            assert isinstance(target, torch.Tensor)
            if name in biases:
                bias = torch.as_tensor(list(biases[name]), dtype=target.dtype)
                if target.dim() == 1:
                    target[offset:offset + size] = bias
                else:  # ensemble layers: (K, 1, out)
                    target[..., offset:offset + size] = bias
            start += size
