"""Where does a set's error come from: test rows that repeat a training row, or the others?

wine_quality has 1,179 duplicated feature rows in 6,497, and about a quarter of each fold's test
rows repeat a training row exactly. A model that memorises (a random forest grown to one row
per leaf) predicts those from their twin's label; a network cannot. This script splits each
regression task's error (RMSE over the RMSE of the training mean, as in ``quality.py``) into
the test rows with an exact twin among the training rows ("repeated") and the rest ("new"),
for the default MultiTaskNet, one LightGBM per target and polyhead's forest, on the quality
benchmark's splits, each fitted single-threaded with the split's seed.

    python benchmarks/duplicate_rows.py [--sets wine_quality]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="wine_quality")
    args = parser.parse_args()

    import datasets
    import lightgbm as lgb

    import polyhead

    print("| set | task | model | repeated rows | new rows |\n|---|---|---|---|---|")
    for name in args.sets.split(","):
        data = datasets.load(name)
        if data is None:
            print(f"{name}: not here", file=sys.stderr)
            continue
        key = data.X.astype(str).agg("|".join, axis=1).to_numpy()
        regression = [t.name for t in data.tasks if t.kind == "regression"]
        errors: dict[tuple[str, str, str], list[float]] = {}
        shares = []
        for seed, (train, test) in enumerate(data.splits):
            seen = set(key[train])
            repeated = np.array([k in seen for k in key[test]])
            shares.append(repeated.mean())
            X_tr, X_te = data.X.iloc[train], data.X.iloc[test]
            net = polyhead.MultiTaskNet(tasks=data.tasks, random_state=seed, n_threads=1)
            net_pred = net.fit(X_tr, data.y.iloc[train]).predict(X_te)
            forest = polyhead.MultiTaskForest(tasks=data.tasks, random_state=seed, n_jobs=1)
            forest_pred = forest.fit(X_tr, data.y.iloc[train]).predict(X_te)
            for task in regression:
                y = data.y[task].to_numpy(float)
                booster = lgb.LGBMRegressor(random_state=seed, n_jobs=1, verbose=-1)
                preds = {"net": np.asarray(net_pred[task], float),
                         "lightgbm": booster.fit(X_tr, y[train]).predict(X_te),
                         "forest": np.asarray(forest_pred[task], float)}
                base, truth = y[train].mean(), y[test]
                for model, pred in preds.items():
                    for part, rows in (("repeated", repeated), ("new", ~repeated)):
                        rmse = np.sqrt(np.mean((pred[rows] - truth[rows]) ** 2))
                        errors.setdefault((task, model, part), []).append(
                            float(rmse / np.sqrt(np.mean((base - truth[rows]) ** 2))))
        for task in regression:
            for model in ("net", "lightgbm", "forest"):
                print(f"| {name} | {task} | {model} | {np.mean(errors[task, model, 'repeated']):.4f} "
                      f"| {np.mean(errors[task, model, 'new']):.4f} |")
        print(f"\n{name}: {np.mean(shares):.1%} of the test rows repeat a training row "
              f"({len(data.splits)} splits)")


if __name__ == "__main__":
    main()
