"""Every model family on four real data sets, one evaluate table each, with fit seconds.

Data from ../shared/data (skipped when absent):
  abalone  rings (regression) + sex (multiclass), the tutorial split (test_size=0.33, seed 1)
  enb      heating_load + cooling_load (regression), 25% random test split (seed 0)
  yeast    14 labels as one multilabel task, the standard Mulan train/test split
  penguins species (multiclass) + sex (binary, 11 missing) + body_mass_g (regression, 2
           missing), 25% random test split (seed 0)

Fit seconds are also given as a ratio to the joint MultiTaskNet in the same run.

    python benchmarks/families.py [--datasets abalone,enb] [--skip-separate]
"""

from __future__ import annotations

import argparse
import importlib.util
import time
import warnings
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

import polyhead
from polyhead import (
    MultiTaskForest,
    MultiTaskGBM,
    MultiTaskLinear,
    MultiTaskNet,
    Separate,
    Task,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def abalone():
    df = polyhead.datasets.load_abalone()
    X, y = df.drop(columns=["rings", "sex"]), df[["rings", "sex"]]
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.33, random_state=1)
    return X_tr, X_te, y_tr, y_te, {"rings": "regression", "sex": "multiclass"}


def enb():
    df = pd.read_csv(DATA / "enb" / "enb.csv")
    for col in ("orientation", "glazing_area_distribution"):  # category codes, per its README
        df[col] = df[col].astype(str)
    X, y = df.drop(columns=["heating_load", "cooling_load"]), df[["heating_load", "cooling_load"]]
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=0)
    return X_tr, X_te, y_tr, y_te, {"heating_load": "regression", "cooling_load": "regression"}


def yeast():
    tr = pd.read_csv(DATA / "yeast" / "yeast-train.csv")
    te = pd.read_csv(DATA / "yeast" / "yeast-test.csv")
    labels = [f"Class{i}" for i in range(1, 15)]
    tasks = [Task("labels", kind="multilabel", columns=labels)]
    return tr.drop(columns=labels), te.drop(columns=labels), tr[labels], te[labels], tasks


def penguins():
    df = pd.read_csv(DATA / "penguins" / "penguins.csv")
    targets = ["species", "sex", "body_mass_g"]
    X, y = df.drop(columns=targets), df[targets]
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=0)
    return X_tr, X_te, y_tr, y_te, {"species": "multiclass", "sex": "binary", "body_mass_g": "regression"}


DATASETS = {"abalone": abalone, "enb": enb, "yeast": yeast, "penguins": penguins}
MAIN = {"regression": ["mae", "r2"], "binary": ["accuracy", "roc_auc"],
        "multiclass": ["accuracy", "macro_f1"], "multilabel": ["hamming_loss", "micro_f1"]}


def models(skip_separate: bool) -> dict[str, object]:
    out = {"joint net": MultiTaskNet(random_state=0),
           "joint net, uncertainty": MultiTaskNet(weighting="uncertainty", random_state=0)}
    if not skip_separate:
        out["separate nets"] = Separate(MultiTaskNet(), random_state=0)
    out.update({"forest": MultiTaskForest(random_state=0, n_jobs=-1),
                "gbm (hist)": MultiTaskGBM(random_state=0)})
    for backend in ("lightgbm", "xgboost"):
        if importlib.util.find_spec(backend):
            out[f"gbm ({backend})"] = MultiTaskGBM(backend=backend, random_state=0)
    out["linear"] = MultiTaskLinear()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--skip-separate", action="store_true")
    args = parser.parse_args()
    if not DATA.exists():
        raise SystemExit(f"{DATA} is not available")
    warnings.filterwarnings("ignore")
    MultiTaskNet(max_epochs=1).fit(*abalone()[0:4:2])  # warm-up: first-call overheads
    pd.set_option("display.width", 200)
    pd.set_option("display.max_rows", 500)
    for name in args.datasets.split(","):
        X_tr, X_te, y_tr, y_te, tasks = DATASETS[name]()
        rows = []
        for label, model in models(args.skip_separate).items():
            model.set_params(tasks=tasks)
            start = time.perf_counter()
            model.fit(X_tr, y_tr)
            seconds = time.perf_counter() - start
            table = model.evaluate(X_te, y_te)
            for task, row in table.iterrows():
                m1, m2 = MAIN[row["kind"]]
                rows.append({"model": label, "task": task, "kind": row["kind"],
                             "n": int(row["n"]), m1: row[m1], m2: row[m2], "fit_s": seconds})
        result = pd.DataFrame(rows)
        ref = result.loc[result["model"] == "joint net", "fit_s"].iloc[0]
        result["fit_vs_net"] = result["fit_s"] / ref
        print(f"\n== {name}: {len(X_tr)} train / {len(X_te)} test rows, {X_tr.shape[1]} features")
        print(result.set_index(["model", "task"]).round(3).to_string())


if __name__ == "__main__":
    main()
