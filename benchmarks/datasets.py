"""The public multi-task sets of ../shared/data as (X, y, tasks, fixed splits), for benchmarks.

Every set comes with the splits every model is fitted on:

* sets with a standard train/test split (the Mulan multilabel sets, adult) use it, once per
  seed (the seed changes the models, not the split);
* the others use 5-fold cross-validation with the fold seed 0 (3 folds for the sets over
  5,000 rows), one model seed per fold.

tox21's molecules become 1,024-bit Morgan fingerprints (radius 2) with RDKit, which is in the
``bench`` extra; without it that set is skipped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from polyhead import Task

#: where the sets are: ../shared/data beside the checkout, or $POLYHEAD_BENCH_DATA
DATA = Path(os.environ.get("POLYHEAD_BENCH_DATA")
            or Path(__file__).resolve().parents[1].parent / "shared" / "data")


@dataclass
class Dataset:
    name: str
    group: str                      # "regression", "multilabel", "mixed", "missing labels"
    X: pd.DataFrame
    y: pd.DataFrame
    tasks: list[Task]
    splits: list[tuple[np.ndarray, np.ndarray]] = field(repr=False)

    @property
    def description(self) -> str:
        kinds = sorted({t.kind or "?" for t in self.tasks})
        targets = sum(len(t.source_columns) for t in self.tasks)
        return (f"{self.name}: {len(self.X):,} rows, {self.X.shape[1]} features, {targets} targets "
                f"({', '.join(kinds)}), {len(self.splits)} splits")


def _meta(name: str) -> dict:
    return json.loads((DATA / name / "meta.json").read_text())


def _target_names(name: str) -> list[str]:
    return [t["name"] for t in _meta(name)["targets"]]


def _kfold(n: int, folds: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import KFold

    folds = folds or (3 if n > 5000 else 5)
    return [(tr, te) for tr, te in KFold(folds, shuffle=True, random_state=0).split(np.arange(n))]


def regression_set(name: str, drop: tuple[str, ...] = ()) -> Dataset:
    frame = pd.read_csv(DATA / name / f"{name}.csv")
    targets = _target_names(name)
    X = frame.drop(columns=[*targets, *drop])
    y = frame[targets].astype(float)
    return Dataset(name, "regression", X, y, [Task(t, kind="regression") for t in targets],
                   _kfold(len(frame)))


def multilabel_set(name: str, seeds: int = 3) -> Dataset:
    labels = _target_names(name)
    train_file, test_file = DATA / name / f"{name}-train.csv", DATA / name / f"{name}-test.csv"
    if train_file.exists():
        train, test = pd.read_csv(train_file), pd.read_csv(test_file)
        frame = pd.concat([train, test], ignore_index=True)
        tr, te = np.arange(len(train)), np.arange(len(train), len(frame))
        splits = [(tr, te)] * seeds
    else:
        frame = pd.read_csv(DATA / name / f"{name}.csv")
        splits = _kfold(len(frame))
    X = frame.drop(columns=labels)
    y = frame[labels].astype(int)
    return Dataset(name, "multilabel", X, y, [Task("labels", kind="multilabel", columns=labels)],
                   splits)


def student() -> Dataset:
    frame = pd.read_csv(DATA / "student_performance" / "student-por.csv")
    targets = ["G1", "G2", "G3", "G3_pass", "G3_5level"]
    tasks = [Task("G1", kind="regression"), Task("G2", kind="regression"),
             Task("G3", kind="regression"), Task("G3_pass", kind="binary"),
             Task("G3_5level", kind="multiclass")]
    return Dataset("student_performance", "mixed", frame.drop(columns=targets), frame[targets],
                   tasks, _kfold(len(frame)))


def wine() -> Dataset:
    frame = pd.read_csv(DATA / "wine_quality" / "wine_quality.csv")
    tasks = [Task("quality", kind="regression"), Task("color", kind="binary")]
    return Dataset("wine_quality", "mixed", frame.drop(columns=["quality", "color"]),
                   frame[["quality", "color"]], tasks, _kfold(len(frame)))


def penguins() -> Dataset:
    frame = pd.read_csv(DATA / "penguins" / "penguins.csv")
    tasks = [Task("species", kind="multiclass"), Task("sex", kind="binary"),
             Task("body_mass_g", kind="regression")]
    keep = frame["body_mass_g"].notna()  # two penguins have no measurement at all
    frame = frame[keep].reset_index(drop=True)
    return Dataset("penguins", "mixed", frame.drop(columns=["species", "sex", "body_mass_g", "year"]),
                   frame[["species", "sex", "body_mass_g"]], tasks, _kfold(len(frame)))


def adult(seeds: int = 2) -> Dataset:
    train = pd.read_csv(DATA / "adult" / "adult_train.csv")
    test = pd.read_csv(DATA / "adult" / "adult_test.csv")
    frame = pd.concat([train, test], ignore_index=True)
    targets = ["income_gt_50k", "marital_status", "hours_per_week"]
    tasks = [Task("income_gt_50k", kind="binary"), Task("marital_status", kind="multiclass"),
             Task("hours_per_week", kind="regression")]
    X = frame.drop(columns=[*targets, "income", "relationship"])  # relationship gives marital status away
    tr, te = np.arange(len(train)), np.arange(len(train), len(frame))
    return Dataset("adult", "mixed", X, frame[targets], tasks, [(tr, te)] * seeds)


def molecules(name: str, folds: int = 3) -> Dataset | None:
    """A MoleculeNet set (tox21, sider, clintox): one binary task per assay, missing labels
    kept missing, each molecule as a 1,024-bit Morgan fingerprint (radius 2)."""
    try:
        from rdkit import Chem, RDLogger
        from rdkit.Chem import rdFingerprintGenerator
    except ImportError:
        return None
    RDLogger.DisableLog("rdApp.*")
    frame = pd.read_csv(DATA / name / f"{name}.csv")
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=1024)
    rows, keep = [], []
    for i, smiles in enumerate(frame["smiles"]):
        mol = Chem.MolFromSmiles(smiles)
        if mol is None:
            continue
        rows.append(generator.GetFingerprintAsNumPy(mol).astype(np.uint8))
        keep.append(i)
    X = pd.DataFrame(np.vstack(rows), columns=[f"fp{i}" for i in range(1024)]).astype(np.float32)
    labels = _target_names(name)
    y = frame.loc[keep, labels].reset_index(drop=True)
    return Dataset(name, "missing labels", X, y,
                   [Task(t, kind="binary") for t in labels], _kfold(len(X), folds))


def tox21() -> Dataset | None:
    return molecules("tox21")


def genbase() -> Dataset:
    """genbase: 27 protein-function labels from motif flags; ``protein`` is an identifier."""
    data = multilabel_set("genbase")
    data.X = data.X.drop(columns=["protein"])
    return data


LOADERS: dict[str, Callable[[], Dataset | None]] = {
    **{name: (lambda name=name: regression_set(name)) for name in
       ("enb", "edm", "jura", "atp1d", "atp7d", "oes97", "scpf", "slump", "sf1", "sf2",
        "oes10", "osales", "andro")},
    **{name: (lambda name=name: multilabel_set(name)) for name in
       ("yeast", "emotions", "scene", "enron", "flags", "medical")},
    "genbase": genbase,
    "foodtruck": lambda: multilabel_set("foodtruck"),
    "student_performance": student,
    "wine_quality": wine,
    "penguins": penguins,
    "adult": adult,
    "tox21": tox21,
    "sider": lambda: molecules("sider"),
    "clintox": lambda: molecules("clintox"),
}

#: sets no default was ever chosen on (the ninth session's defaults and before): a check that
#: the defaults carry over to data nobody tuned on, as the held-out sets of the quality issue
VALIDATION = ("sf1", "oes10", "osales", "andro", "medical", "genbase", "foodtruck", "sider", "clintox")


def with_spikes(data: Dataset, features: int = 3, share: float = 0.001, sigmas: float = 85.0,
                seed: int = 0) -> Dataset:
    """The set with rare extreme readings, as in the held-out river-flow-like set (a value about
    85 standard deviations out in about 0.1% of rows): in ``features`` numeric columns with
    more than two values, ``share`` of the rows (at least 2) are set to mean + 85 std."""
    rng = np.random.default_rng(seed)
    X = data.X.copy()
    numeric = [c for c in X.columns if pd.api.types.is_numeric_dtype(X[c]) and X[c].nunique() > 2]
    for col in rng.choice(numeric, size=min(features, len(numeric)), replace=False):
        values = X[col].astype(float)
        rows = rng.choice(len(X), size=max(2, int(share * len(X))), replace=False)
        values.iloc[rows] = values.mean() + sigmas * values.std()
        X[col] = values
    return Dataset(f"{data.name}~spikes", data.group, X, data.y, data.tasks, data.splits)


SPIKED = ("enb", "jura", "atp1d", "scpf", "wine_quality", "yeast", "student_performance", "sf2")


def load(name: str) -> Dataset | None:
    """A set by name (``name~spikes``: with rare extreme readings, see :func:`with_spikes`), or
    None when its files (or RDKit, for tox21) are not here."""
    base, _, variant = name.partition("~")
    if not (DATA / base).exists():
        return None
    data = LOADERS[base]()
    if data is not None and variant == "spikes":
        data = with_spikes(data)
    return data
