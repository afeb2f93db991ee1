"""Multiclass classification: one of several class labels per row.

Outputs: a probability per class, ``(n, n_classes)``. Loss: log loss on a softmax.
Metrics: accuracy, macro-F1, log loss.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ._classes import ClassKind
from .base import Slot, log_prob, masked_mean

if TYPE_CHECKING:  # pragma: no cover
    import torch


class Multiclass(ClassKind):
    kind = "multiclass"
    head_label = "softmax"
    losses = ("log_loss",)
    directions = {"accuracy": "max", "macro_f1": "max", "log_loss": "min", "brier": "min", "ece": "min"}
    main_metric = "accuracy"
    score_metric = "accuracy"

    def fit(self, y: pd.DataFrame) -> None:
        self.fit_classes(y, most=None)

    @property
    def head_width(self) -> int:
        assert self._classes is not None
        return len(self._classes)

    def head_bias(self) -> np.ndarray | None:
        if self._prior is None:
            return None
        log_prior = np.log(np.clip(self._prior, 1e-4, 1.0))
        return log_prior - log_prior.mean()

    def encode(self, y: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        codes = self.class_codes(self.column(y))
        return codes.astype(np.int64), codes >= 0

    def loss(self, raw: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
        import torch.nn.functional as F

        if weight is None and raw.dim() == 2:  # one fused op on the common path
            return F.cross_entropy(raw, target)
        # flattened so packed ensembles' (K, n, C) outputs read as K*n rows of C classes
        flat = F.cross_entropy(raw.reshape(-1, raw.shape[-1]), target.reshape(-1).clamp_min(0),
                               reduction="none")
        return masked_mean(flat, None if weight is None else weight.reshape(-1))

    def closed_form_loss(self) -> str | None:
        return "softmax"

    def output(self, raw: torch.Tensor) -> torch.Tensor:
        import torch

        return torch.softmax(raw, dim=-1)

    def output_loss(self, outputs: torch.Tensor, target: torch.Tensor,
                    weight: torch.Tensor | None) -> torch.Tensor:
        nll = -log_prob(outputs.gather(-1, target.clamp_min(0).unsqueeze(-1)).squeeze(-1))
        return masked_mean(nll, weight)

    def metrics(self, y: pd.DataFrame, outputs: np.ndarray) -> dict[str, float]:
        scored = self.class_metrics(y, outputs)
        if scored is None:
            return self.empty_metrics()
        codes, proba, out = scored
        out["macro_f1"] = self.macro_f1(codes, proba.argmax(axis=1))
        return {"n": out["n"], **{m: out[m] for m in self.directions}}

    def slots(self, y: pd.DataFrame) -> list[Slot]:
        codes, mask = self.encode(y)
        return [Slot(self.name, "classification", np.where(mask, codes, 0), mask,
                     n_classes=self.head_width)]

    def from_slots(self, results: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.asarray(results[self.name])

    def onnx_from_slots(self, g: Any, slots: Mapping[str, str]) -> tuple[str, str | None]:
        proba = slots[self.name]
        return g.op("ArgMax", [proba], axis=1, keepdims=0), proba
