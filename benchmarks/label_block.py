"""A block of 0/1 label columns with ``tasks=None``: one multilabel task (what polyhead infers
from eight label columns up) against one binary task per label (what it inferred before), for
the default MultiTaskNet: fit seconds and mean AUC over the labels on held-out rows.

Sets: a synthetic 174-label matrix of 500 rows (the size of the music-tag set of the quality
issue) and the multilabel sets of ../shared/data with at least eight labels (split 0). Labels
constant in the training rows are left out of both arms (a binary task cannot train on them).

    python benchmarks/label_block.py [--sets yeast,enron]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))


def synthetic(rows: int = 500, features: int = 68, labels: int = 174, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(rows, features)), columns=[f"x{i}" for i in range(features)])
    W = rng.normal(size=(features, labels))
    Y = pd.DataFrame(((X.to_numpy() @ W) / 8 + rng.normal(size=(rows, labels)) > 1.0).astype(int),
                     columns=[f"tag{i}" for i in range(labels)])
    cut = int(rows * 0.8)
    return X, Y, np.arange(cut), np.arange(cut, rows)


def mean_auc(model, X: pd.DataFrame, Y: pd.DataFrame) -> float:
    from sklearn.metrics import roc_auc_score

    proba = model.predict_proba(X)
    aucs = []
    for j, col in enumerate(Y.columns):
        p = (np.asarray(proba[col])[:, 1] if col in proba
             else np.asarray(next(iter(proba.values())))[:, j])
        if Y[col].nunique() == 2:
            aucs.append(roc_auc_score(Y[col], p))
    return float(np.mean(aucs))


def main() -> None:
    import polyhead

    parser = argparse.ArgumentParser()
    parser.add_argument("--sets", default="synthetic,yeast,enron,medical,genbase,foodtruck")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    polyhead.MultiTaskNet(max_epochs=2, n_threads=1).fit(  # imports and compilation paid here
        pd.DataFrame({"a": np.arange(40.0)}), pd.DataFrame({"b": np.arange(40) % 2}))
    print("| set | labels | one multilabel task (tasks=None) | one binary task per label | time ratio |")
    print("|---|---|---|---|---|")
    for name in args.sets.split(","):
        if name == "synthetic":
            X, Y, tr, te = synthetic()
        else:
            import datasets

            data = datasets.load(name)
            if data is None:
                continue
            X, Y, (tr, te) = data.X, data.y, data.splits[0]
        Y = Y[[c for c in Y.columns if Y.iloc[tr][c].nunique() == 2]]
        arms = {}
        for arm, tasks in (("block", None), ("binary", [polyhead.Task(c, kind="binary") for c in Y.columns])):
            model = polyhead.MultiTaskNet(tasks=tasks, random_state=0, n_threads=1)
            start = time.perf_counter()
            model.fit(X.iloc[tr], Y.iloc[tr])
            arms[arm] = (time.perf_counter() - start, mean_auc(model, X.iloc[te], Y.iloc[te]))
        (tb, ab), (tn, an) = arms["block"], arms["binary"]
        print(f"| {name} | {Y.shape[1]} | {tb:.2f} s, AUC {ab:.4f} | {tn:.2f} s, AUC {an:.4f} | {tn / tb:.1f}x |",
              flush=True)


if __name__ == "__main__":
    main()
