"""Ordinal classification: ordered classes (a 1-5 rating, a grade, an age in rings).

``Task("grade", kind="ordinal", classes=["low", "mid", "high"])`` gives the order; numbers are
ordered by value, and an ordered pandas categorical by its categories. Text labels without an
order are an error, since sorting them alphabetically rarely means anything.

The head is rank-consistent by construction (a cumulative-link model in the CORAL family): for
K classes it gives K - 1 logits ``z_k`` of P(y > c_k), built as ``z_1 = r_1``,
``z_k = z_(k-1) - softplus(r_k)``, so P(y > c_1) >= P(y > c_2) >= ... always, the implied class
probabilities ``P(y = c_k) = P(y > c_(k-1)) - P(y > c_k)`` are never negative, and the
thresholds are in order for every row. Loss: the mean binary log loss of the K - 1 "above
c_k" questions (CORAL's).

Outputs: a probability per class, ``(n, K)``. ``predict`` gives the most probable class, in
its own label type; ``predict(X, expected=True)`` the expected value (in the classes' units
when they are numbers, in ranks 0..K-1 otherwise). Metrics: accuracy, MAE of the expected
value (units or ranks), quadratic weighted kappa, log loss. The tree and linear families fit
the same K - 1 "above c_k" questions as binary problems and make their probabilities
monotone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._convert import plain
from ..exceptions import TaskError
from ._classes import ClassKind, class_labels
from .base import Slot, describe_bad, log_prob, masked_mean

if TYPE_CHECKING:  # pragma: no cover
    import torch


class Ordinal(ClassKind):
    kind = "ordinal"
    head_label = "cumulative link"
    losses = ("cumulative",)
    directions = {"accuracy": "max", "mae": "min", "qwk": "max", "log_loss": "min", "brier": "min", "ece": "min"}
    main_metric = "mae"
    score_metric = "accuracy"
    options = ("classes",)

    @classmethod
    def parse_args(cls, task_name: str, values: list[Any]) -> dict[str, Any]:
        return {"classes": tuple(values)}

    @classmethod
    def check_task(cls, task: Any) -> None:
        super().check_task(task)
        if task.classes is not None:
            classes = list(task.classes)
            if len(classes) < 2 or len(set(map(repr, classes))) != len(classes):
                raise TaskError(f"task {task.name!r}: classes= must list at least two distinct "
                                f"labels in order, got {classes!r}")

    def fit(self, y: pd.DataFrame) -> None:
        column = self.column(y)
        if self.task.classes is not None:
            classes = np.asarray(list(self.task.classes), dtype=object)
            numeric = [c for c in classes.tolist() if isinstance(c, (int, float)) and not isinstance(c, bool)]
            if len(numeric) == len(classes):
                classes = np.asarray(numeric)
        elif isinstance(column.dtype, pd.CategoricalDtype) and column.dtype.ordered:
            classes = np.asarray(column.dtype.categories.tolist(), dtype=object)
        else:
            classes = class_labels(column)
            if classes.dtype.kind not in "iuf":
                raise TaskError(f"task {self.name!r}: ordinal labels of text need their order: "
                                f"Task({self.name!r}, kind='ordinal', classes=[...lowest to "
                                "highest...])")
        if len(classes) < 2:
            raise TaskError(f"task {self.name!r}: column {column.name!r} has only one class "
                            f"({plain(classes[0])!r}); an ordinal task needs at least two")
        self.set_classes(classes, column)
        codes = self.class_codes(column)
        if (codes == -2).any():
            raise TaskError(f"task {self.name!r}: label {describe_bad(column, codes == -2)} is not "
                            f"one of the declared classes ({', '.join(map(repr, classes.tolist()[:8]))})")

    @property
    def n_classes(self) -> int:
        assert self._classes is not None
        return len(self._classes)

    @property
    def head_width(self) -> int:
        return self.n_classes - 1

    @property
    def values_(self) -> np.ndarray:
        """The number each class stands for: itself when classes are numbers, else its rank."""
        assert self._classes is not None
        if self._classes.dtype.kind in "iuf":
            return self._classes.astype(float)
        return np.arange(self.n_classes, dtype=float)

    def head_bias(self) -> np.ndarray | None:
        """Raw outputs whose cumulative logits are the training labels' P(y > c_k)."""
        if self._prior is None:
            return None
        above = np.clip(1 - np.cumsum(self._prior)[:-1], 1e-4, 1 - 1e-4)
        z = np.log(above / (1 - above))
        steps = np.maximum(z[:-1] - z[1:], 1e-3)
        return np.concatenate([z[:1], np.log(np.expm1(steps))])  # softplus^-1 of the steps

    def encode(self, y: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        codes = self.class_codes(self.column(y))
        return codes.astype(np.int64), codes >= 0

    # -- the network ---------------------------------------------------------------------------
    @staticmethod
    def cumulative_logits(raw: torch.Tensor) -> torch.Tensor:
        """Logits of P(y > c_k), non-increasing along the last axis."""
        import torch
        import torch.nn.functional as F

        if raw.shape[-1] == 1:
            return raw
        steps = F.softplus(raw[..., 1:])
        return torch.cat([raw[..., :1], raw[..., :1] - torch.cumsum(steps, dim=-1)], dim=-1)

    def loss(self, raw: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        logits = self.cumulative_logits(raw)
        ks = torch.arange(logits.shape[-1], device=raw.device)
        above = (target.unsqueeze(-1) > ks).to(logits.dtype)
        per_row = F.binary_cross_entropy_with_logits(logits, above, reduction="none").mean(-1)
        return masked_mean(per_row, weight) if weight is not None else per_row.mean()

    def output(self, raw: torch.Tensor) -> torch.Tensor:
        import torch

        above = torch.sigmoid(self.cumulative_logits(raw))
        ones = torch.ones_like(above[..., :1])
        zeros = torch.zeros_like(above[..., :1])
        cumulative = torch.cat([ones, above, zeros], dim=-1)
        return (cumulative[..., :-1] - cumulative[..., 1:]).clamp_min(0.0)

    def output_loss(self, outputs: torch.Tensor, target: torch.Tensor,
                    weight: torch.Tensor | None) -> torch.Tensor:
        import torch

        above = (1 - torch.cumsum(outputs, dim=-1))[..., :-1].clamp(0.0, 1.0)
        ks = torch.arange(above.shape[-1], device=outputs.device)
        truth = (target.unsqueeze(-1) > ks).to(above.dtype)
        per_row = -(truth * log_prob(above) + (1 - truth) * log_prob(1 - above)).mean(-1)
        return masked_mean(per_row, weight)

    # -- predictions ----------------------------------------------------------------------------
    def expected(self, outputs: np.ndarray) -> np.ndarray:
        return outputs @ self.values_

    def metrics(self, y: pd.DataFrame, outputs: np.ndarray) -> dict[str, float]:
        from sklearn import metrics as skm

        scored = self.class_metrics(y, outputs)
        if scored is None:
            return self.empty_metrics()
        codes, proba, out = scored
        known = codes >= 0
        truth = self.values_[np.maximum(codes, 0)]
        out["mae"] = float(np.abs(proba @ self.values_ - truth)[known].mean()) if known.any() else np.nan
        pred = proba.argmax(axis=1)
        if known.any() and len(np.unique(np.concatenate([codes[known], pred[known]]))) > 1:
            out["qwk"] = float(skm.cohen_kappa_score(codes[known], pred[known], weights="quadratic",
                                                     labels=np.arange(self.n_classes)))
        else:
            out["qwk"] = np.nan
        return {"n": out["n"], **{m: out[m] for m in self.directions}}

    # -- tree and linear families: K - 1 "above c_k" binary problems -------------------------
    def slots(self, y: pd.DataFrame) -> list[Slot]:
        codes, mask = self.encode(y)
        return [Slot(f"{self.name}[>{k}]", "classification", (codes > k).astype(np.int64), mask,
                     n_classes=2) for k in range(self.head_width)]

    def from_slots(self, results: Mapping[str, np.ndarray]) -> np.ndarray:
        above = np.column_stack([np.asarray(results[f"{self.name}[>{k}]"])[:, 1]
                                 for k in range(self.head_width)])
        above = np.minimum.accumulate(above, axis=1)  # rank-consistent: non-increasing
        n = len(above)
        cumulative = np.column_stack([np.ones(n), above, np.zeros(n)])
        return np.clip(cumulative[:, :-1] - cumulative[:, 1:], 0.0, 1.0)

    def chain_features(self, outputs: np.ndarray) -> dict[str, np.ndarray]:
        return {f"chain:{self.name}": self.expected(outputs), **super().chain_features(outputs)}

    # -- uncertainty: contiguous sets around the expected rank -------------------------------------
    conformal_methods = ("rank",)

    def _expected_rank(self, outputs: np.ndarray) -> np.ndarray:
        return outputs @ np.arange(self.n_classes, dtype=float)

    def conformity(self, y: pd.DataFrame, outputs: np.ndarray, scale: np.ndarray | None,
                   method: str) -> np.ndarray:
        """``|expected rank - rank of the label|``: the set is every class within the threshold
        of the expected rank, which is always contiguous."""
        codes = self.class_codes(self.column(y))
        scores = np.abs(self._expected_rank(outputs) - np.maximum(codes, 0))
        return np.where(codes < 0, np.nan, scores)

    def region(self, outputs: np.ndarray, threshold: np.ndarray, scale: np.ndarray | None,
               method: str, index: pd.Index) -> pd.DataFrame:
        assert self._classes is not None
        expected = self._expected_rank(outputs)[:, None]
        ranks = np.arange(self.n_classes)[None, :]
        inside = np.abs(ranks - expected) <= np.reshape(threshold, (-1, 1)) + 1e-9
        nearest = np.clip(np.rint(expected[:, 0]), 0, self.n_classes - 1).astype(int)
        inside[np.arange(len(inside)), nearest] |= ~inside.any(axis=1)  # never empty
        return pd.DataFrame(inside, index=index, columns=self._classes.tolist())

    def temper(self, outputs: np.ndarray, temperature: np.ndarray) -> np.ndarray:
        """The cumulative logits divided by T (rank consistency is kept)."""
        above = np.clip(1 - np.cumsum(outputs, axis=1)[:, :-1], 1e-12, 1 - 1e-12)
        z = np.log(above / (1 - above)) / float(np.ravel(temperature)[0])
        above = 1 / (1 + np.exp(-z))
        cumulative = np.column_stack([np.ones(len(z)), above, np.zeros(len(z))])
        return np.clip(cumulative[:, :-1] - cumulative[:, 1:], 0.0, 1.0)

    def load_state(self, state: Mapping[str, Any]) -> None:
        super().load_state(state)
