"""Regression: a number per row.

The network learns the standardised target (``(y - mean) / std`` of the training labels) and
predicts in the target's units. Losses: ``mse`` (default), ``huber``, ``mae``.
Outputs: values in the target's units, ``(n,)``. Metrics: MAE, RMSE, R².
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
    column_means,
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


class Scaled(Kind):
    """A kind whose network target is a standardised number (regression, quantile)."""

    mean: float = 0.0
    scale: float = 1.0

    def values(self, y: pd.DataFrame) -> np.ndarray:
        return numeric_values(self.task, self.column(y), self.kind)

    def fit(self, y: pd.DataFrame) -> None:
        values = self.values(y)
        observed = values[~np.isnan(values)]
        with np.errstate(over="ignore", invalid="ignore"):
            mean, std = float(observed.mean()), float(observed.std())
        if not (np.isfinite(mean) and np.isfinite(std)):
            raise TaskError(f"task {self.name!r}: target values too large to standardise "
                            f"(e.g. {describe_bad(self.column(y), np.abs(values) == np.nanmax(np.abs(values)))})")
        self.mean = mean
        self.scale = std if std > 0 else 1.0
        with np.errstate(over="ignore"):
            z = np.abs((observed - self.mean) / self.scale)
        if len(z) and not np.all(z <= FLOAT32_MAX):
            raise TaskError(f"task {self.name!r}: a target value does not survive standardising")

    def encode(self, y: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        values = self.values(y)
        mask = ~np.isnan(values)
        z = np.where(mask, (values - self.mean) / self.scale, 0.0)
        return z.astype(np.float32), mask

    def otherwise_output(self, value: Any, n: int) -> np.ndarray:
        return np.full(n, np.nan if value is None else float(value))

    def state(self) -> dict[str, Any]:
        return {"mean": self.mean, "scale": self.scale}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.mean = finite_float(state.get("mean"), f"task {self.name!r}: mean")
        self.scale = finite_float(state.get("scale"), f"task {self.name!r}: scale", positive=True)


def _stacked_regression(name: str) -> Any:
    def stacked(raw: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
        import torch.nn.functional as F

        diff = raw - target
        if name == "mse":
            values = diff ** 2
        elif name == "huber":
            values = F.huber_loss(raw, target, reduction="none")
        else:
            values = diff.abs()
        return column_means(values, weight)

    return stacked


class Regression(Scaled):
    kind = "regression"
    head_label = "value"
    losses = ("mse", "huber", "mae")
    directions = {"mae": "min", "rmse": "min", "r2": "max"}
    main_metric = "mae"
    score_metric = "r2"
    point_value = True
    uncertainty_factor = 0.5

    def loss(self, raw: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
        import torch.nn.functional as F

        pred = raw.squeeze(-1)
        name = self.loss_name
        if name == "mse":
            if weight is None:  # one fused op on the common path
                return F.mse_loss(pred, target)
            return masked_mean((pred - target) ** 2, weight)
        if name == "huber":
            return masked_mean(F.huber_loss(pred, target, reduction="none"), weight)
        return masked_mean((pred - target).abs(), weight)

    def closed_form_loss(self) -> str | None:
        return "squared_error" if self.loss_name == "mse" else None

    def output(self, raw: torch.Tensor) -> torch.Tensor:
        return raw.squeeze(-1) * self.scale + self.mean

    def stack_key(self) -> Any:
        return ("regression", self.loss_name)

    def stacked_loss(self, raw: torch.Tensor, target: torch.Tensor,  # type: ignore[override]
                     weight: torch.Tensor | None) -> torch.Tensor:
        return _stacked_regression(self.loss_name)(raw, target, weight)

    def output_loss(self, outputs: torch.Tensor, target: torch.Tensor,
                    weight: torch.Tensor | None) -> torch.Tensor:
        return self.loss(((outputs - self.mean) / self.scale).unsqueeze(-1), target, weight)

    def metrics(self, y: pd.DataFrame, outputs: np.ndarray) -> dict[str, float]:
        from sklearn import metrics as skm

        values = self.values(y)
        keep = ~np.isnan(values) & np.isfinite(outputs)
        t, p = values[keep], outputs[keep]
        if not len(t):
            return self.empty_metrics()
        err = p - t
        r2 = float(skm.r2_score(t, p)) if len(t) > 1 else np.nan
        return {"n": float(len(t)), "mae": float(np.abs(err).mean()),
                "rmse": float(np.sqrt((err ** 2).mean())), "r2": r2}

    def slots(self, y: pd.DataFrame) -> list[Slot]:
        z, mask = self.encode(y)
        return [Slot(self.name, "regression", z.astype(np.float64), mask)]

    def from_slots(self, results: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.asarray(results[self.name], dtype=float) * self.scale + self.mean

    def onnx_from_slots(self, g: Any, slots: Mapping[str, str]) -> tuple[str, str | None]:
        scaled = g.op("Mul", [slots[self.name], g.const(np.float32(self.scale))])
        return g.op("Add", [scaled, g.const(np.float32(self.mean))]), None

    def figure(self, y: pd.DataFrame, outputs: np.ndarray, title: str) -> Any:
        return scatter_figure(self.values(y), outputs, title)

    conformal_methods = ("absolute",)

    def conformity(self, y: pd.DataFrame, outputs: np.ndarray, scale: np.ndarray | None,
                   method: str) -> np.ndarray:
        """``|y - prediction| / scale``: the absolute residual, normalised by a difficulty
        estimate when there is one."""
        return np.abs(self.values(y) - outputs) / (1.0 if scale is None else scale)

    def region(self, outputs: np.ndarray, threshold: np.ndarray, scale: np.ndarray | None,
               method: str, index: pd.Index) -> pd.DataFrame:
        half = threshold * (1.0 if scale is None else scale)
        return interval_frame(outputs - half, outputs + half, index)

    def region_stats(self, y: pd.DataFrame, region: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return interval_stats(self.values(y), region)
