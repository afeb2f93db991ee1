"""Equal weighting: the loss is the sum of task losses times the tasks' own weights."""

from __future__ import annotations

import torch

from .base import LossWeighting


class Equal(LossWeighting):
    """``sum_t weight_t * loss_t`` with each task's ``Task.weight`` (1 by default)."""

    name = "equal"

    def forward(self, losses: torch.Tensor) -> torch.Tensor:
        return torch.dot(self.task_weights, losses)
