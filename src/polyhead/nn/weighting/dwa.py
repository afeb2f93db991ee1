"""Dynamic Weight Average (Liu, Johns and Davison, "End-to-End Multi-Task Learning with
Attention", CVPR 2019).

Each task's weight follows how fast its loss is falling: ``w_t = T_n * softmax(r / temperature)``
with ``r_t`` the ratio of its last two epochs' mean training losses, so a task whose loss has
stalled gets more weight. Costs nothing per step (no per-task gradients). The first two epochs
weigh every task 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .base import LossWeighting


class DWA(LossWeighting):
    """Dynamic weight average.

    Parameters
    ----------
    temperature : float, default=2.0
        Softmax temperature: larger evens the weights out.
    """

    name = "dwa"
    dynamic: torch.Tensor
    history: torch.Tensor

    def __init__(self, temperature: float = 2.0) -> None:
        super().__init__()
        self.temperature = temperature

    def setup(self, tasks: Sequence[Any], weights: Sequence[float]) -> None:
        super().setup(tasks, weights)
        n = len(tasks)
        self.register_buffer("dynamic", torch.ones(n))
        self.register_buffer("history", torch.zeros(2, n))  # the last two epochs' losses

    def forward(self, losses: torch.Tensor) -> torch.Tensor:
        return torch.dot(self.task_weights * self.dynamic, losses)

    @torch.no_grad()
    def on_epoch_end(self, losses: torch.Tensor) -> None:
        self.history = torch.stack([self.history[1], losses.detach().to(self.history)])
        if bool((self.history[0] > 0).all()):
            ratio = self.history[1] / self.history[0]
            self.dynamic = len(ratio) * torch.softmax(ratio / self.temperature, dim=0)

    def effective_weights(self) -> list[float]:
        return (self.task_weights * self.dynamic).tolist()

    def get_config(self) -> dict[str, Any]:
        return {"temperature": self.temperature}
