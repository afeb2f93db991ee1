"""The classic abalone experiment: separate nets versus one joint net.

The tutorial's question: predict an abalone's rings both as a number and as a class. Is one
network with two heads as good as two networks? Same split as the tutorial
(``train_test_split(test_size=0.33, random_state=1)``), polyhead's default settings.
"""

from __future__ import annotations

import time
from typing import Any

import pandas as pd


def abalone_split() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """X_train, X_test, y_train, y_test with ``rings`` as a number and as a class."""
    from sklearn.model_selection import train_test_split

    from .datasets import load_abalone

    df = load_abalone()
    X = df.drop(columns="rings")
    y = pd.DataFrame({"rings": df.rings, "rings_class": df.rings})
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.33, random_state=1)
    return X_tr, X_te, y_tr, y_te


def run_demo(random_state: int = 0, **params: Any) -> tuple[pd.DataFrame, Any]:
    """Fit the three models; return the results table and the fitted joint model."""
    from . import nn  # noqa: F401  (import torch before timing: fit seconds are training time)
    from .models.net import MultiTaskNet

    X_tr, X_te, y_tr, y_te = abalone_split()
    # warm-up: torch's first calls allocate and initialise; fit seconds are training time
    MultiTaskNet(tasks={"rings": "regression"}, max_epochs=1).fit(X_tr.head(256), y_tr.head(256)[["rings"]])
    models = {
        "separate: regression net": {"rings": "regression"},
        "separate: classification net": {"rings_class": "multiclass"},
        "joint net (2 heads)": {"rings": "regression", "rings_class": "multiclass"},
    }
    rows, joint = [], None
    for label, tasks in models.items():
        model = MultiTaskNet(tasks=tasks, random_state=random_state, **params)
        start = time.perf_counter()
        model.fit(X_tr, y_tr[list(tasks)])
        seconds = time.perf_counter() - start
        table = model.evaluate(X_te, y_te[list(tasks)])
        rows.append({
            "model": label,
            "MAE (rings)": table.loc["rings", "mae"] if "rings" in tasks else float("nan"),
            "accuracy (rings_class)": (table.loc["rings_class", "accuracy"]
                                       if "rings_class" in tasks else float("nan")),
            "epochs": model.n_iter_,
            "fit seconds": seconds,
        })
        joint = model
    return pd.DataFrame(rows).set_index("model"), joint
