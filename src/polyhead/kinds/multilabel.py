"""Multilabel classification: several 0/1 labels per row, one column each.

``Task("tags", kind="multilabel", columns=["a", "b", "c"])``. Each label may be missing on its
own. Outputs: a probability per label, ``(n, n_labels)``. Loss: per-label log loss.
Metrics: Hamming loss, micro- and macro-F1, subset accuracy. A label that is constant in the
training rows (all 0, common in a cross-validation fold) is learnt as that constant by every
family.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._convert import plain, row_label
from ..exceptions import TaskError
from .base import EPS, Kind, Slot, log_prob, masked_mean

if TYPE_CHECKING:  # pragma: no cover
    import torch


class Multilabel(Kind):
    kind = "multilabel"
    head_label = "sigmoids"
    losses = ("log_loss",)
    directions = {"hamming_loss": "min", "micro_f1": "max", "macro_f1": "max",
                  "subset_accuracy": "max", "log_loss": "min", "brier": "min", "ece": "min"}
    main_metric = "hamming_loss"
    score_metric = "subset_accuracy"
    has_proba = True
    options = ("columns",)

    @classmethod
    def check_task(cls, task: Any) -> None:
        super().check_task(task)
        if task.columns is None:
            raise TaskError(f"task {task.name!r}: a multilabel task names its 0/1 label columns: "
                            f"Task({task.name!r}, kind='multilabel', columns=[...])")
        if len(task.columns) == 0:
            raise TaskError(f"task {task.name!r}: a multilabel task needs at least one label "
                            "column; columns=[] names none")
        if len(set(task.columns)) != len(task.columns):
            raise TaskError(f"task {task.name!r}: a label column is named twice")

    @property
    def labels(self) -> list[str]:
        return list(self.task.source_columns)

    @property
    def head_width(self) -> int:
        return len(self.labels)

    @property
    def output_columns(self) -> list[str]:
        return self.labels

    def values(self, y: pd.DataFrame) -> np.ndarray:
        """Labels as float64 0/1 with NaN for missing; anything else is an error."""
        out = np.empty((len(y), len(self.labels)), dtype=float)
        for j, col in enumerate(self.labels):
            column = y[col]
            values = pd.to_numeric(column.astype(object), errors="coerce").to_numpy(dtype=float)
            bad = column.notna().to_numpy() & ~np.isin(values, (0.0, 1.0))
            if bad.any():
                first = int(np.flatnonzero(bad)[0])
                raise TaskError(f"task {self.name!r}: multilabel column {col!r} must hold 0/1 "
                                f"values, found {plain(column.iloc[first])!r} at row "
                                f"{row_label(column.index, first)!r}")
            out[:, j] = values
        return out

    _prior: np.ndarray | None = None

    def fit(self, y: pd.DataFrame) -> None:
        values = self.values(y)
        for j, col in enumerate(self.labels):
            if np.isnan(values[:, j]).all():
                raise TaskError(f"task {self.name!r}: label column {col!r} is all missing")
        observed = ~np.isnan(values)
        self._prior = (np.where(observed, values, 0).sum(axis=0) + 0.5) / (observed.sum(axis=0) + 1.0)

    def head_bias(self) -> np.ndarray | None:
        if self._prior is None:
            return None
        p = np.clip(self._prior, 1e-4, 1 - 1e-4)
        return np.log(p / (1 - p))

    def encode(self, y: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        values = self.values(y)
        mask = ~np.isnan(values)
        return np.where(mask, values, 0.0).astype(np.float32), mask

    def closed_form_loss(self) -> str | None:
        return "logistic_columns"

    def loss(self, raw: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
        import torch.nn.functional as F

        return masked_mean(F.binary_cross_entropy_with_logits(raw, target, reduction="none"), weight)

    def output(self, raw: torch.Tensor) -> torch.Tensor:
        import torch

        return torch.sigmoid(raw)

    def output_loss(self, outputs: torch.Tensor, target: torch.Tensor,
                    weight: torch.Tensor | None) -> torch.Tensor:
        nll = -(target * log_prob(outputs) + (1 - target) * log_prob(1 - outputs))
        return masked_mean(nll, weight)

    def predict(self, outputs: np.ndarray) -> np.ndarray:
        return (outputs >= 0.5).astype(np.int64)

    def export_decode(self, outputs: Any) -> tuple[Any, Any]:
        return (outputs >= 0.5).long(), outputs

    def columns(self, outputs: np.ndarray, expected: bool = False) -> dict[str, np.ndarray]:
        values = outputs if expected else self.predict(outputs)
        return {col: values[:, j] for j, col in enumerate(self.labels)}

    def proba_array(self, outputs: np.ndarray) -> np.ndarray:
        return outputs

    def proba_frame(self, outputs: np.ndarray, index: pd.Index) -> pd.DataFrame:
        return pd.DataFrame(outputs, index=index, columns=self.labels)

    def otherwise_output(self, value: Any, n: int) -> np.ndarray:
        if value is None:
            return np.full((n, len(self.labels)), np.nan)
        if value not in (0, 1):
            raise TaskError(f"task {self.name!r}: otherwise= for a multilabel task is 0 or 1")
        return np.full((n, len(self.labels)), float(value))

    def metrics(self, y: pd.DataFrame, outputs: np.ndarray) -> dict[str, float]:
        truth = self.values(y)
        observed = ~np.isnan(truth) & np.isfinite(outputs)
        rows = observed.any(axis=1)
        if not rows.any():
            return self.empty_metrics()
        t = np.where(observed, truth, 0) > 0.5
        p = outputs >= 0.5
        wrong = (t != p) & observed
        tp = (t & p & observed).sum(axis=0)
        fp = (~t & p & observed).sum(axis=0)
        fn = (t & ~p & observed).sum(axis=0)

        def f1(tp: Any, fp: Any, fn: Any) -> Any:
            denom = 2 * tp + fp + fn
            return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)

        prob = np.clip(np.where(observed, outputs, 0.5), EPS, 1 - EPS)
        nll = -(t * np.log(prob) + (~t) * np.log(1 - prob))
        from ._classes import expected_calibration_error

        confidence = np.where(p, outputs, 1 - outputs)[observed]
        return {"n": float(rows.sum()),
                "hamming_loss": float(wrong.sum() / observed.sum()),
                "micro_f1": float(f1(tp.sum(), fp.sum(), fn.sum())),
                "macro_f1": float(f1(tp, fp, fn).mean()),
                "subset_accuracy": float((~wrong[rows]).all(axis=1).mean()),
                "log_loss": float(nll[observed].mean()),
                "brier": float(((outputs - t) ** 2)[observed].mean()),
                "ece": expected_calibration_error(confidence, (p == t)[observed])}

    def slots(self, y: pd.DataFrame) -> list[Slot]:
        values, mask = self.encode(y)
        return [Slot(f"{self.name}[{j}]", "classification", values[:, j].astype(np.int64),
                     mask[:, j], n_classes=2) for j in range(self.head_width)]

    def from_slots(self, results: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.column_stack([np.asarray(results[f"{self.name}[{j}]"])[:, 1]
                                for j in range(self.head_width)])

    def onnx_from_slots(self, g: Any, slots: Mapping[str, str]) -> tuple[str, str | None]:
        one = g.const(np.array([1], dtype=np.int64))
        proba = g.op("Concat", [g.op("Gather", [slots[f"{self.name}[{j}]"], one], axis=1)
                                for j in range(self.head_width)], axis=1)
        return g.op("Cast", [g.op("GreaterOrEqual", [proba, g.const(np.float32(0.5))])], to=7), proba

    def chain_features(self, outputs: np.ndarray) -> dict[str, np.ndarray]:
        return {f"chain:{self.name}={label}": outputs[:, j] for j, label in enumerate(self.labels)}

    # -- uncertainty: a set per label ---------------------------------------------------------------
    conformal_methods = ("lac",)

    def conformity(self, y: pd.DataFrame, outputs: np.ndarray, scale: np.ndarray | None,
                   method: str) -> np.ndarray:
        """Per label, ``1 - p(label's value)`` (LAC), ``(n, k)``, NaN where missing."""
        truth = self.values(y)
        return np.where(np.isnan(truth), np.nan, np.where(truth > 0.5, 1 - outputs, outputs))

    def region(self, outputs: np.ndarray, threshold: np.ndarray, scale: np.ndarray | None,
               method: str, index: pd.Index) -> pd.DataFrame:
        """Per label, the values 0 and 1 whose score is within that label's threshold:
        columns ``label:0`` and ``label:1``."""
        threshold = np.broadcast_to(np.asarray(threshold, dtype=float), outputs.shape)
        columns: dict[str, np.ndarray] = {}
        for j, label in enumerate(self.labels):
            columns[f"{label}:0"] = outputs[:, j] <= threshold[:, j]
            columns[f"{label}:1"] = 1 - outputs[:, j] <= threshold[:, j]
        return pd.DataFrame(columns, index=index)

    def region_stats(self, y: pd.DataFrame, region: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Per row, the share of its observed labels whose set holds the label (a set per
        label: its mean is the per-label coverage; 1 when every label is covered, which the
        joint row counts), and the mean set size over labels."""
        truth = self.values(y)
        ones = np.column_stack([region[f"{label}:1"].to_numpy(bool) for label in self.labels])
        zeros = np.column_stack([region[f"{label}:0"].to_numpy(bool) for label in self.labels])
        observed = ~np.isnan(truth)
        hit = np.where(truth > 0.5, ones, zeros) & observed
        counts = observed.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(counts > 0, hit.sum(axis=1) / counts, np.nan)
        return share, (ones.astype(float) + zeros).mean(axis=1)

    def reliability(self, y: pd.DataFrame, outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Every observed label's probability of 1, and whether it was 1."""
        truth = self.values(y)
        observed = ~np.isnan(truth)
        if not observed.any():
            return None
        return outputs[observed], truth[observed] > 0.5

    def n_temperatures(self) -> int:
        return self.head_width

    def temper(self, outputs: np.ndarray, temperature: np.ndarray) -> np.ndarray:
        p = np.clip(outputs, 1e-12, 1 - 1e-12)
        return 1 / (1 + np.exp(-np.log(p / (1 - p)) / np.asarray(temperature, dtype=float)))

    def json_type(self) -> dict[str, Any]:
        return {"type": "integer", "enum": [0, 1]}

    def figure(self, y: pd.DataFrame, outputs: np.ndarray, title: str) -> Any:
        from ..evaluation import plots

        truth = self.values(y)
        observed = ~np.isnan(truth)
        pred = self.predict(outputs)
        accuracy = [float((pred[observed[:, j], j] == truth[observed[:, j], j]).mean())
                    if observed[:, j].any() else float("nan") for j in range(self.head_width)]
        return plots.bars(self.labels, accuracy, "accuracy per label", title)
