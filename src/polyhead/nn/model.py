"""A shared MLP trunk and one linear head per task; ``forward`` returns ``{task: output}``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from .names import ACTIVATION_NAMES, NORM_NAMES

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh, "elu": nn.ELU,
}
NORMS = NORM_NAMES
assert tuple(ACTIVATIONS) == ACTIVATION_NAMES


def mlp_layers(in_features: int, hidden: Sequence[int], activation: str, dropout: float,
               norm: str | None, linear: Callable[[int, int], nn.Module] = nn.Linear,
               ) -> tuple[list[nn.Module], int]:
    """``[linear -> norm -> activation -> dropout] * len(hidden)`` and the output width."""
    layers: list[nn.Module] = []
    width = in_features
    for size in hidden:
        layers.append(linear(width, size))
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
    """``[Linear -> norm -> activation -> dropout] * len(hidden)``; ``out_features`` is its width."""

    def __init__(self, in_features: int, hidden: Sequence[int], activation: str = "relu",
                 dropout: float = 0.0, norm: str | None = None,
                 linear: Callable[[int, int], nn.Module] = nn.Linear) -> None:
        layers, width = mlp_layers(in_features, hidden, activation, dropout, norm, linear)
        super().__init__(*layers)
        self.out_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # .forward directly: a tiny net's step is dominated by per-call overhead, and
        # Module.__call__'s hook machinery costs as much as a small matmul
        for layer in self:
            x = layer.forward(x)
        return x


class MultiTaskModule(nn.Module):
    """Shared trunk plus a ``ModuleDict`` of linear heads keyed by task name.

    Parameters
    ----------
    in_features : int
        Width of the encoded feature matrix.
    heads : mapping of str to int
        Task name -> number of raw outputs (1 for regression/binary, classes, labels).
    hidden, activation, dropout, norm
        The trunk's shape (see :class:`Trunk`).
    """

    def __init__(self, in_features: int, heads: Mapping[str, int], hidden: Sequence[int] = (),
                 activation: str = "relu", dropout: float = 0.0, norm: str | None = None) -> None:
        super().__init__()
        self.trunk = Trunk(in_features, hidden, activation, dropout, norm)
        self.heads = nn.ModuleDict(
            {name: nn.Linear(self.trunk.out_features, dim) for name, dim in heads.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.trunk.forward(x)
        return {name: head.forward(h) for name, head in self.heads.items()}

    @torch.no_grad()
    def init_head_bias(self, biases: Mapping[str, Sequence[float]]) -> None:
        """Start each named head's bias at the given values (its kind's prior)."""
        for name, bias in biases.items():
            head = self.heads[name]
            assert isinstance(head, nn.Linear) and head.bias is not None
            head.bias.copy_(torch.as_tensor(list(bias), dtype=head.bias.dtype))
