"""Quantiles: a band for a number, not just a point.

``Task("y", kind="quantile", quantiles=(0.05, 0.5, 0.95))`` predicts one value per quantile,
trained with the pinball loss on the standardised target. Quantiles never cross, by
construction: the network's head gives the lowest quantile and positive increments
(``softplus``) for the others; the tree and linear families fit one model per quantile and
sort the values of each row.

Prediction columns are named ``"{task}:q{quantile}"``, e.g. ``y:q0.05``, ``y:q0.5``,
``y:q0.95``. Outputs: ``(n, n_quantiles)`` in the target's units. Metrics: mean pinball loss,
pinball loss per quantile (``pinball_q0.05``...), ``coverage`` of the outer band (the share of
labels between the lowest and the highest quantile) and its mean ``width``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..exceptions import TaskError
from .base import Slot, interval_frame, interval_stats, masked_mean
from .regression import Scaled

if TYPE_CHECKING:  # pragma: no cover
    import torch


def quantile_label(q: float) -> str:
    return f"q{q:g}"


class Quantile(Scaled):
    kind = "quantile"
    head_label = "sorted quantiles"
    losses = ("pinball",)
    directions = {"pinball": "min", "coverage": "max", "width": "min"}
    main_metric = "pinball"
    score_metric = "pinball"
    uncertainty_factor = 1.0
    options = ("quantiles",)

    @classmethod
    def parse_args(cls, task_name: str, values: list[Any]) -> dict[str, Any]:
        if not all(isinstance(v, (int, float)) for v in values):
            raise TaskError(f"task {task_name!r}: quantile(...) must list numbers, got {values!r}")
        return {"quantiles": tuple(float(v) for v in values)}

    @classmethod
    def check_task(cls, task: Any) -> None:
        super().check_task(task)
        qs = task.quantiles
        if qs is None or len(qs) == 0:
            raise TaskError(f"task {task.name!r}: a quantile task needs quantiles=, e.g. "
                            f"Task({task.name!r}, kind='quantile', quantiles=(0.05, 0.5, 0.95))")
        if not all(isinstance(q, (int, float)) and not isinstance(q, bool) and 0 < q < 1
                   and math.isfinite(q) for q in qs):
            raise TaskError(f"task {task.name!r}: quantiles must lie strictly between 0 and 1, "
                            f"got {tuple(qs)!r}")
        if any(b <= a for a, b in itertools.pairwise(qs)):
            raise TaskError(f"task {task.name!r}: quantiles must be sorted and distinct, got "
                            f"{tuple(qs)!r}")

    @property
    def quantiles(self) -> tuple[float, ...]:
        assert self.task.quantiles is not None
        return tuple(float(q) for q in self.task.quantiles)

    @property
    def head_width(self) -> int:
        return len(self.quantiles)

    @property
    def output_columns(self) -> list[str]:
        return [f"{self.name}:{quantile_label(q)}" for q in self.quantiles]

    _start: np.ndarray | None = None

    def fit(self, y: pd.DataFrame) -> None:
        super().fit(y)
        values = self.values(y)
        observed = values[~np.isnan(values)]
        self._start = (np.quantile(observed, self.quantiles) - self.mean) / self.scale

    def head_bias(self) -> np.ndarray | None:
        """Raw outputs that predict the training labels' own quantiles."""
        if self._start is None:
            return None
        steps = np.maximum(np.diff(self._start), 1e-3)
        return np.concatenate([self._start[:1], np.log(np.expm1(steps))])

    # -- the network ---------------------------------------------------------------------------
    @staticmethod
    def monotone(raw: torch.Tensor) -> torch.Tensor:
        """The lowest quantile, then positive increments: sorted by construction."""
        import torch
        import torch.nn.functional as F

        if raw.shape[-1] == 1:
            return raw
        return torch.cat([raw[..., :1], raw[..., :1] + torch.cumsum(F.softplus(raw[..., 1:]), -1)], -1)

    def loss(self, raw: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
        import torch

        pred = self.monotone(raw)
        qs = torch.tensor(self.quantiles, dtype=pred.dtype, device=pred.device)
        diff = target.unsqueeze(-1) - pred
        per_row = torch.maximum(qs * diff, (qs - 1) * diff).mean(-1)
        return masked_mean(per_row, weight) if weight is not None else per_row.mean()

    def output(self, raw: torch.Tensor) -> torch.Tensor:
        return self.monotone(raw) * self.scale + self.mean

    def output_loss(self, outputs: torch.Tensor, target: torch.Tensor,
                    weight: torch.Tensor | None) -> torch.Tensor:
        import torch

        pred = (outputs - self.mean) / self.scale
        qs = torch.tensor(self.quantiles, dtype=pred.dtype, device=pred.device)
        diff = target.unsqueeze(-1) - pred
        return masked_mean(torch.maximum(qs * diff, (qs - 1) * diff).mean(-1), weight)

    # -- predictions ----------------------------------------------------------------------------
    def columns(self, outputs: np.ndarray, expected: bool = False) -> dict[str, np.ndarray]:
        return {col: outputs[:, j] for j, col in enumerate(self.output_columns)}

    def otherwise_output(self, value: Any, n: int) -> np.ndarray:
        return np.full((n, len(self.quantiles)), np.nan if value is None else float(value))

    def metrics(self, y: pd.DataFrame, outputs: np.ndarray) -> dict[str, float]:
        values = self.values(y)
        keep = ~np.isnan(values) & np.isfinite(outputs).all(axis=1)
        t, p = values[keep], outputs[keep]
        if not len(t):
            return {"n": 0.0, "pinball": math.nan, "coverage": math.nan, "width": math.nan,
                    **{f"pinball_{quantile_label(q)}": math.nan for q in self.quantiles}}
        qs = np.asarray(self.quantiles)
        diff = t[:, None] - p
        pinball = np.maximum(qs * diff, (qs - 1) * diff).mean(axis=0)
        out = {"n": float(len(t)), "pinball": float(pinball.mean()),
               "coverage": float(((t >= p[:, 0]) & (t <= p[:, -1])).mean()),
               "width": float((p[:, -1] - p[:, 0]).mean())}
        out.update({f"pinball_{quantile_label(q)}": float(v) for q, v in zip(qs, pinball, strict=True)})
        return out

    def score(self, y: pd.DataFrame, outputs: np.ndarray) -> float:
        """Minus the mean pinball loss in standard deviations of the target."""
        return -self.metrics(y, outputs)["pinball"] / self.scale

    def slots(self, y: pd.DataFrame) -> list[Slot]:
        z, mask = self.encode(y)
        return [Slot(f"{self.name}[{quantile_label(q)}]", "quantile", z.astype(np.float64), mask,
                     alpha=q) for q in self.quantiles]

    def from_slots(self, results: Mapping[str, np.ndarray]) -> np.ndarray:
        values = np.column_stack([np.asarray(results[f"{self.name}[{quantile_label(q)}]"], dtype=float)
                                  for q in self.quantiles])
        return np.sort(values, axis=1) * self.scale + self.mean

    conformal_methods = ("cqr",)

    def conformity(self, y: pd.DataFrame, outputs: np.ndarray, scale: np.ndarray | None,
                   method: str) -> np.ndarray:
        """Conformalized quantile regression (Romano et al., 2019): how far the label lies
        outside the band of the outer quantiles (negative inside)."""
        truth = self.values(y)
        return np.maximum(outputs[:, 0] - truth, truth - outputs[:, -1])

    def region(self, outputs: np.ndarray, threshold: np.ndarray, scale: np.ndarray | None,
               method: str, index: pd.Index) -> pd.DataFrame:
        return interval_frame(outputs[:, 0] - threshold, outputs[:, -1] + threshold, index)

    def region_stats(self, y: pd.DataFrame, region: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return interval_stats(self.values(y), region)

    def chain_features(self, outputs: np.ndarray) -> dict[str, np.ndarray]:
        return {f"chain:{col}": outputs[:, j] for j, col in enumerate(self.output_columns)}

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "quantiles": list(self.quantiles)}

    def figure(self, y: pd.DataFrame, outputs: np.ndarray, title: str) -> Any:
        from ..evaluation import plots

        values = self.values(y)
        keep = ~np.isnan(values) & np.isfinite(outputs).all(axis=1)
        return plots.band(values[keep], outputs[keep], self.quantiles, title)
