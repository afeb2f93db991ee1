"""The tiny base class every loss-weighting strategy implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


class LossWeighting(nn.Module):
    """Combine a vector of per-task losses into the scalar that training minimises.

    Subclasses set ``name``, build any learnt parameters in :meth:`setup` and implement
    :meth:`forward`. ``task_weights`` (the tasks' own ``weight``) are always available.
    Constructor arguments are configuration only, exposed by :meth:`get_config` so that the
    estimator's ``get_params`` and saved models see them.
    """

    name = "base"
    task_weights: torch.Tensor

    def setup(self, tasks: Sequence[Any], weights: Sequence[float]) -> None:
        """Prepare for these fitted tasks (:class:`~polyhead.kinds.Kind` instances) and their
        user weights (called once per fit)."""
        self.n_tasks = len(tasks)
        self.register_buffer("task_weights", torch.tensor(list(weights), dtype=torch.float32))

    def forward(self, losses: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def after_backward(self, losses: torch.Tensor) -> None:
        """Called after each step's backward pass with that step's per-task losses."""

    def on_epoch_end(self, losses: torch.Tensor) -> None:
        """Called after each epoch with its mean per-task training losses."""

    def effective_weights(self) -> list[float]:
        """The weight each task's loss currently gets (for the training history)."""
        return self.task_weights.tolist()

    def get_config(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"
