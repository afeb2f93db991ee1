"""Homoscedastic uncertainty weighting (Kendall, Gal and Cipolla, CVPR 2018).

Each task t learns ``s_t = log sigma_t^2``. Regression losses are scaled by ``exp(-s_t) / 2``,
the others (classes, counts, quantiles) by ``exp(-s_t)``, and ``s_t / 2`` is added to keep sigma from growing
without bound: tasks the model finds noisy are down-weighted automatically.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .base import LossWeighting


class Uncertainty(LossWeighting):
    """Learnt per-task weights from homoscedastic uncertainty.

    Parameters
    ----------
    init_log_var : float, default=0.0
        Starting value of every ``log sigma^2`` (0 = weight 1 for classification).
    """

    name = "uncertainty"
    factor: torch.Tensor

    def __init__(self, init_log_var: float = 0.0) -> None:
        super().__init__()
        self.init_log_var = init_log_var

    def setup(self, tasks: Sequence[Any], weights: Sequence[float]) -> None:
        super().setup(tasks, weights)
        self.log_vars = nn.Parameter(torch.full((len(tasks),), float(self.init_log_var)))
        # 1/2 for Gaussian likelihoods (regression), 1 for the others: each kind says
        factor = [float(t.uncertainty_factor) for t in tasks]
        self.register_buffer("factor", torch.tensor(factor))

    def forward(self, losses: torch.Tensor) -> torch.Tensor:
        scaled = self.factor * torch.exp(-self.log_vars) * losses + 0.5 * self.log_vars
        return (self.task_weights * scaled).sum()

    def effective_weights(self) -> list[float]:
        with torch.no_grad():
            return (self.task_weights * self.factor * torch.exp(-self.log_vars)).tolist()

    def get_config(self) -> dict[str, Any]:
        return {"init_log_var": self.init_log_var}
