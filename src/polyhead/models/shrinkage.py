"""Shrinking a regression output toward its training mean where held-out rows say so.

A tree or linear model fitted on a target it cannot predict (a count that is almost always 0,
a label dominated by noise) still predicts something away from the mean for every row, and
does worse than predicting the mean. The tree and linear families see some of their own
predictions on rows the fitted model did not train on: a random forest's out-of-bag rows,
the boosters' early-stopping validation rows, the linear model's cross-fitted folds. On those
rows the least-squares factor ``f`` in ``mean + f * (prediction - mean)`` says how much of the
prediction's spread is signal; it is kept, clipped to [0, 1), only where it lowers the held-out
squared error beyond the noise (the paired per-row gain above ``Z`` standard errors, on at
least ``MIN_ROWS`` rows), so a well-predicted output is left exactly as it was.

Measured on ``benchmarks/quality.py``'s 19 sets (README, "Against the trivial predictor").

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> truth = rng.normal(size=200)
>>> noise = rng.normal(size=200)                 # a model that learned nothing
>>> factor = choose(noise, truth, center=0.0)
>>> factor is not None and factor < 0.2
True
>>> choose(truth + 0.1 * noise, truth, center=0.0) is None   # a good model is kept whole
True
"""

from __future__ import annotations

import math

import numpy as np

#: held-out rows needed before a factor is trusted
MIN_ROWS = 20
#: the paired per-row gain must exceed this many standard errors
Z = 1.5


def training_mean(values: np.ndarray, weight: np.ndarray | None = None) -> float:
    """The training mean the output is shrunk toward (weighted when there are weights)."""
    return float(np.average(values, weights=weight))


def choose(pred: np.ndarray, truth: np.ndarray, center: float,
           weight: np.ndarray | None = None) -> float | None:
    """The factor in [0, 1) for held-out predictions ``pred`` of ``truth``, or None to keep
    the predictions as they are."""
    pred, truth = np.asarray(pred, dtype=float), np.asarray(truth, dtype=float)
    keep = np.isfinite(pred) & np.isfinite(truth)
    if weight is not None:
        keep &= np.asarray(weight) > 0
    if keep.sum() < MIN_ROWS:
        return None
    w = np.ones(int(keep.sum())) if weight is None else np.asarray(weight, dtype=float)[keep]
    w = w / w.mean()
    spread, target = pred[keep] - center, truth[keep] - center
    denominator = float(np.sum(w * spread ** 2))
    if denominator <= 0:
        return None
    factor = min(max(float(np.sum(w * spread * target)) / denominator, 0.0), 1.0)
    if factor >= 1.0:
        return None
    gain = w * ((spread - target) ** 2 - (factor * spread - target) ** 2)
    se = float(gain.std()) / math.sqrt(len(gain))
    return factor if float(gain.mean()) > Z * se else None


def apply(pred: np.ndarray, factor: float, center: float) -> np.ndarray:
    """``center + factor * (pred - center)``."""
    return center + factor * (np.asarray(pred, dtype=float) - center)
