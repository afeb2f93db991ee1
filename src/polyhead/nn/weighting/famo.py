"""FAMO: Fast Adaptive Multitask Optimization (Liu, Liu, Stone and Liu, NeurIPS 2023).

Balances tasks so their losses fall at the same *rate*, with O(1) cost per step (no per-task
gradients): the training loss is ``sum_t z_t log(L_t) / c`` with ``z = softmax(w)``, and after
each step the logits ``w`` move to favour the tasks whose log-loss fell least. The reference
implementation re-evaluates the batch after the step to measure that fall; here it is measured
between consecutive steps, which spares a forward pass per step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .base import LossWeighting


class FAMO(LossWeighting):
    """Fast adaptive multitask optimisation.

    Parameters
    ----------
    lr : float, default=0.025
        Learning rate of the task logits (Adam).
    gamma : float, default=0.01
        Weight decay of the task logits (pulls the weights back towards equal).
    """

    name = "famo"
    previous: torch.Tensor
    logits: torch.Tensor

    def __init__(self, lr: float = 0.025, gamma: float = 0.01) -> None:
        super().__init__()
        self.lr = lr
        self.gamma = gamma

    def setup(self, tasks: Sequence[Any], weights: Sequence[float]) -> None:
        super().setup(tasks, weights)
        n = len(tasks)
        # not an nn.Parameter: the model's optimiser must not update it
        self.register_buffer("logits", torch.zeros(n))
        self.register_buffer("previous", torch.full((n,), float("nan")))
        self._adam_m = torch.zeros(n)
        self._adam_v = torch.zeros(n)
        self._steps = 0

    def forward(self, losses: torch.Tensor) -> torch.Tensor:
        z = torch.softmax(self.logits, dim=0) * self.task_weights
        z = z / z.sum().clamp_min(1e-12)
        positive = losses.clamp_min(1e-8)
        c = (z / positive).sum().detach()
        return (torch.log(positive) * z).sum() / c

    @torch.no_grad()
    def after_backward(self, losses: torch.Tensor) -> None:
        current = losses.detach().clamp_min(1e-8).log()
        if bool(torch.isfinite(self.previous).all()):
            delta = self.previous - current
            z = torch.softmax(self.logits, dim=0)
            grad = z * (delta - (z * delta).sum())  # d softmax(w) / dw applied to delta
            grad = grad + self.gamma * self.logits
            self._steps += 1
            self._adam_m = 0.9 * self._adam_m + 0.1 * grad
            self._adam_v = 0.999 * self._adam_v + 0.001 * grad ** 2
            m = self._adam_m / (1 - 0.9 ** self._steps)
            v = self._adam_v / (1 - 0.999 ** self._steps)
            self.logits -= self.lr * m / (v.sqrt() + 1e-8)
        self.previous = current

    def effective_weights(self) -> list[float]:
        with torch.no_grad():
            z = torch.softmax(self.logits, dim=0) * self.task_weights
            return (z / z.sum().clamp_min(1e-12) * len(z)).tolist()

    def get_config(self) -> dict[str, Any]:
        return {"lr": self.lr, "gamma": self.gamma}

