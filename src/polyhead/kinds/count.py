"""Counts: non-negative integers (visits, defects, claims, rentals per hour).

A log link: the head gives ``log mu - log(mean count)``, so the prediction ``mu`` is never
negative. Losses: ``poisson`` (default) and ``negative_binomial`` (NB2, variance
``mu + alpha mu^2``, with ``alpha`` learnt per row: for over-dispersed counts). The network's
loss is divided by the mean Poisson deviance of predicting the training mean, so a count task
weighs about as much as a standardised regression task in a joint model.

Outputs: the expected count ``mu``, ``(n,)``, a float. Metrics: mean Poisson deviance, D²
(the share of the deviance explained), MAE, RMSE. Families: LightGBM's, XGBoost's and
HistGradientBoosting's ``poisson`` objectives, forests with the Poisson split criterion,
``PoissonRegressor`` for the linear family.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._convert import FLOAT32_MAX
from ..exceptions import TaskError
from .base import (
    Kind,
    Slot,
    describe_bad,
    finite_float,
    interval_frame,
    interval_stats,
    masked_mean,
    numeric_values,
    scatter_figure,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

_MIN_MEAN = 1e-6


def poisson_deviance(y: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Per-row Poisson deviance ``2 (y log(y / mu) - (y - mu))`` (0 log 0 = 0)."""
    mu = np.maximum(mu, 1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(y > 0, y * np.log(y / mu), 0.0)
    return 2.0 * (term - (y - mu))


class Count(Kind):
    kind = "count"
    head_label = "exp (log link)"
    losses = ("poisson", "negative_binomial")
    directions = {"poisson_deviance": "min", "d2": "max", "mae": "min", "rmse": "min"}
    main_metric = "poisson_deviance"
    score_metric = "d2"
    point_value = True
    mean: float = 1.0
    null_deviance: float = 1.0

    def values(self, y: pd.DataFrame) -> np.ndarray:
        column = self.column(y)
        values = numeric_values(self.task, column, "count")
        present = ~np.isnan(values)
        bad = present & ((values < 0) | (np.mod(np.where(present, values, 0), 1) != 0))
        if bad.any():
            raise TaskError(f"task {self.name!r}: a count must be a whole number >= 0, found "
                            f"{describe_bad(column, bad)}")
        return values

    def fit(self, y: pd.DataFrame) -> None:
        values = self.values(y)
        observed = values[~np.isnan(values)]
        if len(observed) and observed.max() > FLOAT32_MAX:
            raise TaskError(f"task {self.name!r}: counts too large")
        self.mean = max(float(observed.mean()), _MIN_MEAN)
        null = float(poisson_deviance(observed, np.full_like(observed, self.mean)).mean())
        self.null_deviance = null if null > 1e-9 else 1.0

    @property
    def head_width(self) -> int:
        return 2 if self.loss_name == "negative_binomial" else 1

    def encode(self, y: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        values = self.values(y)
        mask = ~np.isnan(values)
        return np.where(mask, values, 0.0).astype(np.float32), mask

    # -- the network ---------------------------------------------------------------------------
    def _log_mu(self, raw: torch.Tensor) -> torch.Tensor:
        import math

        return raw[..., 0].clamp(-30.0, 30.0) + math.log(self.mean)

    def loss(self, raw: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
        import torch

        log_mu = self._log_mu(raw)
        mu = torch.exp(log_mu)
        if self.loss_name == "poisson":
            # the deviance: the Poisson log-likelihood less that of a perfect fit (>= 0)
            y_log_y = torch.where(target > 0, target * torch.log(target.clamp_min(1e-12)),
                                  torch.zeros_like(target))
            per_row = 2.0 * (y_log_y - target * log_mu - (target - mu))
        else:
            alpha = torch.nn.functional.softplus(raw[..., 1]) + 1e-6
            r = 1.0 / alpha
            per_row = -(torch.lgamma(target + r) - torch.lgamma(r) - torch.lgamma(target + 1.0)
                        + r * torch.log(r / (r + mu)) + target * torch.log(mu / (r + mu)))
        return masked_mean(per_row, weight) / self.null_deviance

    def output(self, raw: torch.Tensor) -> torch.Tensor:
        import torch

        return torch.exp(self._log_mu(raw))

    def output_loss(self, outputs: torch.Tensor, target: torch.Tensor,
                    weight: torch.Tensor | None) -> torch.Tensor:
        """The Poisson deviance of the expected counts (also for the negative binomial)."""
        import torch

        mu = outputs.clamp_min(1e-12)
        y_log_y = torch.where(target > 0, target * torch.log(target.clamp_min(1e-12)),
                              torch.zeros_like(target))
        per_row = 2.0 * (y_log_y - target * torch.log(mu) - (target - mu))
        return masked_mean(per_row, weight) / self.null_deviance

    def otherwise_output(self, value: Any, n: int) -> np.ndarray:
        return np.full(n, np.nan if value is None else float(value))

    # -- scores ---------------------------------------------------------------------------------
    def metrics(self, y: pd.DataFrame, outputs: np.ndarray) -> dict[str, float]:
        values = self.values(y)
        keep = ~np.isnan(values) & np.isfinite(outputs)
        t, p = values[keep], outputs[keep]
        if not len(t):
            return self.empty_metrics()
        deviance = float(poisson_deviance(t, p).mean())
        null = float(poisson_deviance(t, np.full_like(t, t.mean())).mean())
        err = p - t
        return {"n": float(len(t)), "poisson_deviance": deviance,
                "d2": 1.0 - deviance / null if null > 0 else np.nan,
                "mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err ** 2).mean()))}

    def slots(self, y: pd.DataFrame) -> list[Slot]:
        values, mask = self.encode(y)
        return [Slot(self.name, "poisson", values.astype(np.float64), mask)]

    def from_slots(self, results: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.maximum(np.asarray(results[self.name], dtype=float), 0.0)

    def onnx_from_slots(self, g: Any, slots: Mapping[str, str]) -> tuple[str, str | None]:
        return g.op("Max", [slots[self.name], g.const(np.float32(0.0))]), None

    def figure(self, y: pd.DataFrame, outputs: np.ndarray, title: str) -> Any:
        return scatter_figure(self.values(y), outputs, title)

    conformal_methods = ("poisson",)

    def conformity(self, y: pd.DataFrame, outputs: np.ndarray, scale: np.ndarray | None,
                   method: str) -> np.ndarray:
        """``|y - mu| / sqrt(mu)`` (a Poisson count's own spread), times a difficulty scale."""
        spread = np.sqrt(np.maximum(outputs, 1e-6)) * (1.0 if scale is None else scale)
        return np.abs(self.values(y) - outputs) / spread

    def region(self, outputs: np.ndarray, threshold: np.ndarray, scale: np.ndarray | None,
               method: str, index: pd.Index) -> pd.DataFrame:
        """Whole numbers: the smallest integer interval holding the real one, from 0."""
        half = threshold * np.sqrt(np.maximum(outputs, 1e-6)) * (1.0 if scale is None else scale)
        lower = np.maximum(np.ceil(outputs - half - 1e-9), 0.0)
        upper = np.floor(outputs + half + 1e-9)
        return interval_frame(lower, np.maximum(upper, lower), index)

    def region_stats(self, y: pd.DataFrame, region: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return interval_stats(self.values(y), region)

    def state(self) -> dict[str, Any]:
        return {"mean": self.mean, "null_deviance": self.null_deviance}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.mean = finite_float(state.get("mean"), f"task {self.name!r}: mean", positive=True)
        self.null_deviance = finite_float(state.get("null_deviance"),
                                          f"task {self.name!r}: null_deviance", positive=True)
