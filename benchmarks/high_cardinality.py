"""High-cardinality categorical features: how to encode them (the safety issue, item 5).

A synthetic table with a zip-code-like column (3,000 categories, Zipf-distributed, each with
its own effect on the targets), an id column (one value per row) and three numeric columns.
Targets: a regression and a binary task. For the net, the forest and the linear family, it
compares the encoded matrix's size and held-out quality of:

* frequency-capped one-hot (``max_categories`` = 16, 64, 256, 1024), rarer categories in one
  "other" slot;
* the hashing trick (``FeatureHasher``, 64 and 256 buckets) done outside polyhead and given to
  it as numeric columns.

Uncapped one-hot would need rows x (3,000 + 20,000) float32 values: the memory row shows it.

    python benchmarks/high_cardinality.py [--rows 20000]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd


def make_data(rows: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    n_zip = 3000
    weights = 1.0 / np.arange(1, n_zip + 1) ** 1.1
    zips = rng.choice(n_zip, size=rows, p=weights / weights.sum())
    effect = rng.normal(scale=1.0, size=n_zip)
    num = rng.normal(size=(rows, 3))
    signal = num @ np.array([1.0, -0.5, 0.25]) + effect[zips]
    X = pd.DataFrame(num, columns=["x0", "x1", "x2"])
    X["zip"] = [f"z{z:05d}" for z in zips]
    X["id"] = [f"row{i:07d}" for i in range(rows)]
    y = pd.DataFrame({"amount": signal + rng.normal(scale=0.5, size=rows),
                      "flag": (signal + rng.normal(scale=0.5, size=rows) > 0).astype(int)})
    return X, y


def hashed(X: pd.DataFrame, buckets: int) -> pd.DataFrame:
    from sklearn.feature_extraction import FeatureHasher

    out = X[["x0", "x1", "x2"]].copy()
    for col in ("zip", "id"):
        hasher = FeatureHasher(n_features=buckets, input_type="string", alternate_sign=False)
        block = hasher.transform([[v] for v in X[col]]).toarray().astype(np.float32)
        out = pd.concat([out, pd.DataFrame(block, columns=[f"{col}#{i}" for i in range(buckets)],
                                           index=X.index)], axis=1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20000)
    args = parser.parse_args()
    import polyhead

    X, y = make_data(args.rows)
    cut = int(0.75 * len(X))
    tasks = {"amount": "regression", "flag": "binary"}
    families = {
        "net": lambda **kw: polyhead.MultiTaskNet(tasks=tasks, random_state=0, **kw),
        "forest": lambda **kw: polyhead.MultiTaskForest(tasks=tasks, n_estimators=50,
                                                        random_state=0, n_jobs=1, **kw),
        "linear": lambda **kw: polyhead.MultiTaskLinear(tasks=tasks, **kw),
    }
    variants: dict[str, tuple[pd.DataFrame, dict]] = {}
    for cap in (16, 64, 256, 1024):
        variants[f"one-hot, max_categories={cap}"] = (X, {"max_categories": cap})
    for buckets in (64, 256):
        variants[f"hashing, {buckets} buckets"] = (hashed(X, buckets), {})
    print(f"| encoding | encoded MiB ({len(X):,} rows) | family | amount R² | flag AUC | fit s |")
    print("|---|---|---|---|---|---|")
    full = len(X) * (3 + X["zip"].nunique() + X["id"].nunique()) * 4 / 2**20
    print(f"| one-hot, uncapped | {full:,.0f} | (not fitted) | | | |")
    for label, (data, params) in variants.items():
        for family, make in families.items():
            model = make(**params)
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.fit(data.iloc[:cut], y.iloc[:cut])
            seconds = time.perf_counter() - start
            table = model.evaluate(data.iloc[cut:], y.iloc[cut:])
            mib = len(data) * model.features_.n_outputs_ * 4 / 2**20
            print(f"| {label} | {mib:,.1f} | {family} | {table.loc['amount', 'r2']:.3f} | "
                  f"{table.loc['flag', 'roc_auc']:.3f} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
