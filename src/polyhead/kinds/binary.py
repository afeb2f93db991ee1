"""Binary classification: one of two class labels per row.

Outputs: the probability of the second class (``classes[1]``: True, 1, "yes"...), ``(n,)``.
Loss: log loss on a sigmoid. Metrics: accuracy, ROC AUC, log loss.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ._classes import ClassKind
from .base import Slot, column_means, log_prob, masked_mean

if TYPE_CHECKING:  # pragma: no cover
    import torch


class Binary(ClassKind):
    kind = "binary"
    head_label = "sigmoid"
    losses = ("log_loss",)
    directions = {"accuracy": "max", "roc_auc": "max", "log_loss": "min", "brier": "min", "ece": "min"}
    main_metric = "accuracy"
    score_metric = "accuracy"
    default_condition = 1  # given="buys": buys is its second class (True, 1, "yes")

    def fit(self, y: pd.DataFrame) -> None:
        self.fit_classes(y, most=2)

    def head_bias(self) -> np.ndarray | None:
        if self._prior is None:
            return None
        p = np.clip(self._prior[1], 1e-4, 1 - 1e-4)
        return np.array([np.log(p / (1 - p))])

    def encode(self, y: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        codes = self.class_codes(self.column(y))
        mask = codes >= 0
        return np.where(mask, codes, 0).astype(np.float32), mask

    def loss(self, raw: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
        import torch.nn.functional as F

        if weight is None:
            return F.binary_cross_entropy_with_logits(raw.squeeze(-1), target)
        return masked_mean(F.binary_cross_entropy_with_logits(raw.squeeze(-1), target,
                                                              reduction="none"), weight)

    def stack_key(self) -> Any:
        return ("binary", self.loss_name)

    @staticmethod
    def stacked_loss(raw: torch.Tensor, target: torch.Tensor,
                     weight: torch.Tensor | None) -> torch.Tensor:
        import torch.nn.functional as F

        return column_means(F.binary_cross_entropy_with_logits(raw, target, reduction="none"), weight)

    def closed_form_loss(self) -> str | None:
        return "logistic"

    def output(self, raw: torch.Tensor) -> torch.Tensor:
        import torch

        return torch.sigmoid(raw.squeeze(-1))

    def output_loss(self, outputs: torch.Tensor, target: torch.Tensor,
                    weight: torch.Tensor | None) -> torch.Tensor:
        nll = -(target * log_prob(outputs) + (1 - target) * log_prob(1 - outputs))
        return masked_mean(nll, weight)

    def proba_array(self, outputs: np.ndarray) -> np.ndarray:
        return np.column_stack([1.0 - outputs, outputs])

    def from_proba(self, proba: np.ndarray) -> np.ndarray:
        return proba[:, 1]

    def predict(self, outputs: np.ndarray) -> np.ndarray:
        assert self._classes is not None
        return self._classes[(outputs >= 0.5).astype(np.int64)]

    def export_decode(self, outputs: Any) -> tuple[Any, Any]:
        import torch

        return (outputs >= 0.5).long(), torch.stack([1.0 - outputs, outputs], dim=-1)

    def reliability(self, y: pd.DataFrame, outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """The probability of the second class, and whether the label is it."""
        codes = self.class_codes(self.column(y))
        keep = codes >= 0
        return (outputs[keep], codes[keep] == 1) if keep.any() else None

    def temper(self, outputs: np.ndarray, temperature: np.ndarray) -> np.ndarray:
        p = np.clip(outputs, 1e-12, 1 - 1e-12)
        return 1 / (1 + np.exp(-np.log(p / (1 - p)) / float(np.ravel(temperature)[0])))

    def metrics(self, y: pd.DataFrame, outputs: np.ndarray) -> dict[str, float]:
        from sklearn import metrics as skm

        scored = self.class_metrics(y, outputs)
        if scored is None:
            return self.empty_metrics()
        codes, proba, out = scored
        positive = codes == 1
        both = positive.any() and (~positive).any()
        out["roc_auc"] = float(skm.roc_auc_score(positive, proba[:, 1])) if both else np.nan
        return {"n": out["n"], **{m: out[m] for m in self.directions}}

    def slots(self, y: pd.DataFrame) -> list[Slot]:
        codes, mask = self.encode(y)
        return [Slot(self.name, "classification", codes.astype(np.int64), mask, n_classes=2)]

    def from_slots(self, results: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.asarray(results[self.name])[:, 1]

    def onnx_from_slots(self, g: Any, slots: Mapping[str, str]) -> tuple[str, str | None]:
        p = g.op("Gather", [slots[self.name], g.const(np.array([1], dtype=np.int64))], axis=1)
        proba = g.op("Concat", [g.op("Sub", [g.const(np.float32(1.0)), p]), p], axis=1)
        index = g.op("Cast", [g.op("GreaterOrEqual", [p, g.const(np.float32(0.5))])], to=7)
        return g.op("Squeeze", [index, g.const(np.array([1], dtype=np.int64))]), proba

    def chain_features(self, outputs: np.ndarray) -> dict[str, np.ndarray]:
        return {f"chain:{self.name}": np.asarray(outputs, dtype=float)}
