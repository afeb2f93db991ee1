"""The tree and linear families, Separate and TaskChain: one task API for every model."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import MIXED_TASKS, make_mixed
from sklearn.base import clone
from sklearn.datasets import make_multilabel_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge

import polyhead
from polyhead import (
    ModelFileError,
    MultiTaskForest,
    MultiTaskGBM,
    MultiTaskLinear,
    MultiTaskNet,
    PolyheadError,
    Separate,
    Task,
    TaskChain,
)

ROW = [[0.6, 1.5, -0.2, 0.9, 2.0, -1.1, 1.3, 0.6, 1.2, -0.8]]
TASKS = [*(Task(n, kind=k) for n, k in MIXED_TASKS.items()),
         Task("tags", kind="multilabel", columns=("t1", "t2", "t3"))]


def families():
    yield MultiTaskForest(n_estimators=20, random_state=0)
    yield MultiTaskForest(kind="extra_trees", n_estimators=20, random_state=0)
    yield MultiTaskGBM(n_estimators=30, random_state=0)
    yield MultiTaskLinear()
    yield Separate(MultiTaskNet(hidden=(32,), max_epochs=60), random_state=0)
    yield Separate({"regression": Ridge(), "classification": LogisticRegression()})
    yield TaskChain(MultiTaskForest(n_estimators=10), cv=3, random_state=0)


def test_multilabel_forest_matches_scikit_learn():
    X, Y = make_multilabel_classification(n_samples=100, n_features=10, n_classes=2,
                                          n_labels=1, random_state=42)
    got = MultiTaskForest(min_samples_leaf=1, random_state=42).fit(X, Y).predict(ROW)
    sklearn = RandomForestClassifier(random_state=42).fit(X, Y)
    want = sklearn.predict(ROW)
    assert got.shape == (1, 2) and set(np.unique(got)) <= {0, 1}
    np.testing.assert_array_equal(got, want)
    # the same forest, every tree: the same probabilities on every row
    ours = MultiTaskForest(min_samples_leaf=1, random_state=42).fit(X, Y).predict_proba(X)
    theirs = sklearn.predict_proba(X)
    for j, name in enumerate(ours):
        np.testing.assert_array_equal(np.asarray(ours[name])[:, -1], theirs[j][:, 1])
    frame = MultiTaskForest(min_samples_leaf=1, random_state=42).fit(
        X, pd.DataFrame(Y, columns=["quality", "demand"]))
    pred = frame.predict(pd.DataFrame(ROW))
    assert list(pred.columns) == ["quality", "demand"]
    np.testing.assert_array_equal(pred.to_numpy(), want)


def test_forest_auto_settings_per_forest():
    """``"auto"``: a random half of the features for the regressor forest, leaves of at least
    five rows for the classifier forest; explicit values reach both; extra trees keep
    scikit-learn's defaults."""
    X = np.random.default_rng(0).normal(size=(60, 4))
    y = pd.DataFrame({"amount": X[:, 0], "label": (X[:, 1] > 0).astype(int)})
    tasks = {"amount": "regression", "label": "binary"}

    def settings(model):
        forests = [u for u in model.units_ for u in (u if isinstance(u, (list, tuple)) else [u])
                   if hasattr(u, "min_samples_leaf")]
        return sorted((type(f).__name__, f.max_features, f.min_samples_leaf) for f in forests)

    assert settings(MultiTaskForest(tasks, n_estimators=3, random_state=0).fit(X, y)) == [
        ("RandomForestClassifier", "sqrt", 5), ("RandomForestRegressor", 0.5, 1)]
    given = MultiTaskForest(tasks, n_estimators=3, max_features=0.8, min_samples_leaf=2).fit(X, y)
    assert settings(given) == [("RandomForestClassifier", 0.8, 2), ("RandomForestRegressor", 0.8, 2)]
    extra = MultiTaskForest(tasks, kind="extra_trees", n_estimators=3).fit(X, y)
    assert settings(extra) == [("ExtraTreesClassifier", "sqrt", 1), ("ExtraTreesRegressor", 1.0, 1)]


def test_three_class_quality_and_demand_strings():
    X, Y = make_multilabel_classification(n_samples=200, n_features=10, n_classes=4,
                                          random_state=0)
    levels = np.array(["low", "medium", "high"])
    y = pd.DataFrame({"quality": levels[Y[:, 0] + Y[:, 1]], "demand": levels[Y[:, 2] + Y[:, 3]]})
    model = MultiTaskForest(random_state=0).fit(X, y)
    assert {n: t.kind for n, t in model.tasks_.items()} == {"quality": "multiclass", "demand": "multiclass"}
    pred = model.predict(X[:5])
    assert set(pred["quality"]) <= set(levels.tolist())
    assert pd.api.types.is_string_dtype(pred["quality"])
    assert list(model.predict_proba(X[:5])["demand"].columns) == ["high", "low", "medium"]


@pytest.mark.parametrize("model", list(families()), ids=lambda m: type(m).__name__)
def test_every_family_has_the_same_face(model, tmp_path):
    X, y = make_mixed(n=240, missing=0.15)
    model = clone(model).set_params(tasks=TASKS)
    model.fit(X, y)
    pred = model.predict(X.iloc[:30])
    assert list(pred.columns) == ["amount", "kind", "level", "t1", "t2", "t3"]
    assert pred.index.equals(X.index[:30])
    proba = model.predict_proba(X.iloc[:30])
    assert set(proba) == {"kind", "level", "tags"}
    np.testing.assert_allclose(proba["level"].sum(axis=1), 1, rtol=1e-6)
    table = model.evaluate(X, y)
    assert list(table.index) == ["amount", "kind", "level", "tags"]
    assert table.loc["kind", "n"] == y["kind"].notna().sum()
    assert table.loc["amount", "r2"] > 0.5 and table.loc["level", "accuracy"] > 0.6
    assert 0 < model.score(X, y) <= 1
    assert set(model.classes_) == {"kind", "level", "tags"}
    assert list(model.feature_names_in_) == ["a", "b", "colour"]
    model.save(tmp_path / "m")
    again = polyhead.load(tmp_path / "m")
    assert type(again) is type(model)
    np.testing.assert_allclose(again.predict(X)["amount"], model.predict(X)["amount"], rtol=1e-9)
    assert (again.predict(X)["level"] == model.predict(X)["level"]).all()
    with pytest.raises(PolyheadError, match="missing feature column 'colour'"):
        model.predict(X.drop(columns="colour"))


def _root_rows(forest):
    return forest.estimators_[0].tree_.weighted_n_node_samples[0]   # bootstrap draws n rows


def test_forest_groups_by_kind_and_drops_missing_rows():
    X, y = make_mixed(n=200)
    y["other"] = y["amount"] * 2
    y.loc[:49, ["amount", "other"]] = np.nan              # missing together: one shared forest
    model = MultiTaskForest(tasks={"amount": "regression", "other": "regression",
                                   "kind": "binary", "level": "multiclass"},
                            n_estimators=5, random_state=0).fit(X, y)
    units = {tuple(keys): unit for keys, unit in model.units_}
    assert set(units) == {("amount", "other"), ("kind", "level")}
    assert _root_rows(units[("amount", "other")]) == 150   # rows without labels dropped
    y.loc[60:70, "other"] = np.nan                       # now missing unevenly: one per task
    model.fit(X, y)
    units = {tuple(keys): unit for keys, unit in model.units_}
    assert set(units) == {("amount",), ("other",), ("kind", "level")}
    assert _root_rows(units[("other",)]) == 139


def test_linear_fits_regression_jointly():
    X, y = make_mixed(n=200)
    y["other"] = y["amount"] * 2 + 1
    model = MultiTaskLinear(tasks={"amount": "regression", "other": "regression", "kind": "binary"}).fit(X, y)
    kinds = [type(unit).__name__ for _, unit in model.units_]
    assert kinds == ["MultiTaskElasticNet", "LogisticRegression"]


def test_linear_alpha_auto_picks_the_strength_its_folds_prefer(tmp_path):
    """alpha="auto": the strongest penalty (every coefficient 0) for targets no feature
    explains, a weaker one where a few of many features carry the signal; the same for a seed;
    kept through the model file. A fixed alpha is used as given."""
    from polyhead.models import linear

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(300, 30)), columns=[f"x{i}" for i in range(30)])
    noise = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300)})
    model = MultiTaskLinear(random_state=0).fit(X, noise)
    standardised = np.column_stack([(noise[c] - noise[c].mean()) / noise[c].std(ddof=0) for c in noise])
    grid = model._alphas(model.features_.transform(X), standardised)
    assert len(grid) == linear.N_ALPHAS
    assert model.alphas_["a"] == pytest.approx(grid[0]) and model.alphas_["a"] == model.alphas_["b"]
    assert np.allclose(np.vstack([u.coef_ for _, u in model.units_]), 0)
    signal = pd.DataFrame({"a": 2 * X["x0"] - X["x1"] + 0.5 * rng.normal(size=300),
                           "b": X["x2"] + 0.5 * rng.normal(size=300)})
    fitted = MultiTaskLinear(random_state=0).fit(X, signal)
    top = fitted._alphas(fitted.features_.transform(X), np.column_stack(
        [(signal[c] - signal[c].mean()) / signal[c].std(ddof=0) for c in signal]))[0]
    assert fitted.alphas_["a"] < top / 10
    assert fitted.alphas_ == MultiTaskLinear(random_state=0).fit(X, signal).alphas_
    fitted.save(tmp_path / "m")
    assert polyhead.load(tmp_path / "m").alphas_ == fitted.alphas_
    assert MultiTaskLinear(alpha=0.05).fit(X, signal).alphas_ == {"a": 0.05, "b": 0.05}


def test_linear_C_auto_picks_the_penalty_its_folds_prefer(tmp_path):
    """C="auto": the strongest penalty for a label no feature explains, a weak one for a label
    one feature decides; a rare label (a fold's training rows may hold one class) still fits;
    the same for a seed; kept through the model file."""
    from polyhead.models import linear

    rng = np.random.default_rng(1)
    X = pd.DataFrame(rng.normal(size=(300, 20)), columns=[f"x{i}" for i in range(20)])
    rare = np.zeros(300, dtype=int)
    rare[[5, 150]] = 1
    y = pd.DataFrame({"noise": rng.integers(0, 2, 300), "clear": (X["x0"] > 0).astype(int),
                      "rare": rare})
    model = MultiTaskLinear(random_state=0).fit(X, y)
    chosen = {keys[0]: unit.C for keys, unit in model.units_}
    assert chosen["noise"] == linear.CS[0] and chosen["clear"] >= 10
    assert set(chosen.values()) <= set(linear.CS)
    again = MultiTaskLinear(random_state=0).fit(X, y)
    assert chosen == {keys[0]: unit.C for keys, unit in again.units_}
    model.save(tmp_path / "m")
    pd.testing.assert_frame_equal(polyhead.load(tmp_path / "m").predict_proba(X)["clear"],
                                  model.predict_proba(X)["clear"])
    fixed = MultiTaskLinear(C=0.5).fit(X, y)
    assert {unit.C for _, unit in fixed.units_} == {0.5}
    # without a seed the folds are still fixed: a linear fit is deterministic
    pd.testing.assert_frame_equal(MultiTaskLinear().fit(X, y).predict_proba(X)["clear"],
                                  MultiTaskLinear().fit(X, y).predict_proba(X)["clear"])


@pytest.mark.parametrize("backend", ["lightgbm", "xgboost"])
def test_optional_boosters(backend, tmp_path):
    pytest.importorskip(backend)
    X, y = make_mixed(n=300, missing=0.1)
    y["other"] = y["amount"] - 3
    tasks = [*TASKS, Task("other", kind="regression")]
    model = MultiTaskGBM(tasks=tasks, backend=backend, n_estimators=40, random_state=0).fit(X, y)
    table = model.evaluate(X, y)
    assert table.loc["amount", "r2"] > 0.5 and table.loc["kind", "accuracy"] > 0.7
    model.save(tmp_path / "m")
    np.testing.assert_allclose(polyhead.load(tmp_path / "m").predict(X)["amount"],
                               model.predict(X)["amount"], rtol=1e-6)
    assert (tmp_path / "m" / "unit0." f"{backend}").exists()


def test_xgboost_multi_output_tree_when_labels_align():
    pytest.importorskip("xgboost")
    X, y = make_mixed(n=200)
    y["other"] = -y["amount"]
    model = MultiTaskGBM(tasks={"amount": "regression", "other": "regression"}, backend="xgboost",
                         n_estimators=20, random_state=0).fit(X, y)
    assert [keys for keys, _ in model.units_] == [["amount", "other"]]
    config = json.loads(model.units_[0][1].booster.save_config())
    assert config["learner"]["learner_train_param"]["multi_strategy"] == "multi_output_tree"


def test_missing_optional_backend_says_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "lightgbm", None)    # as if it were not installed
    X, y = make_mixed(n=50)
    with pytest.raises(ImportError, match=r"pip install 'polyhead\[lightgbm\]'"):
        MultiTaskGBM(tasks={"amount": "regression"}, backend="lightgbm").fit(X, y)


def test_separate_errors_on_wrong_estimator_kind():
    X, y = make_mixed(n=60)
    with pytest.raises(PolyheadError, match="task 'kind' needs a classifier, got Ridge"):
        Separate(Ridge(), tasks={"kind": "binary"}).fit(X, y)


def test_separate_nets_are_independent():
    X, y = make_mixed(n=120)
    model = Separate(MultiTaskNet(hidden=(8,), max_epochs=3), tasks=MIXED_TASKS, random_state=1).fit(X, y)
    assert [list(m.tasks_) for m in model.estimators_] == [["amount"], ["kind"], ["level"]]
    assert all(m.random_state == 1 for m in model.estimators_)


def test_task_chain_hurdle_example():
    rng = np.random.default_rng(0)
    n = 400
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    positive = X["a"] + 0.3 * rng.normal(size=n) > 0
    y = pd.DataFrame({"is_positive": positive.map({True: "yes", False: "no"}),
                      "amount": np.where(positive, 5 + 2 * X["b"], 0.0)})
    chain = TaskChain(MultiTaskForest(n_estimators=30), tasks={"amount": "regression", "is_positive": "binary"},
                      order=["is_positive", "amount"], cv=3, random_state=0).fit(X, y)
    amount_model = chain.estimators_[1]
    assert "chain:is_positive" in amount_model.feature_names_in_
    table = chain.evaluate(X, y)
    assert table.loc["amount", "r2"] > 0.8 and table.loc["is_positive", "accuracy"] > 0.8
    with pytest.raises(PolyheadError, match="must name every task exactly once"):
        TaskChain(tasks={"amount": "regression", "is_positive": "binary"}, order=["amount"]).fit(X, y)


def test_a_skops_file_is_never_loaded_by_load(tmp_path):
    """skops is no longer trusted: even an allow-listed archive is refused by ``load`` (only
    ``polyhead upgrade`` reads one, see test_sklearn_arrays.py)."""
    import hashlib

    sio = pytest.importorskip("skops.io")
    from sklearn.preprocessing import FunctionTransformer

    X, y = make_mixed(n=80)
    MultiTaskLinear(tasks={"amount": "regression"}).fit(X, y).save(tmp_path / "m")
    evil = sio.dumps(FunctionTransformer(func=eval))
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    old = manifest["units"][0]["file"]
    (tmp_path / "m" / old).unlink()
    del manifest["files_sha256"][old]
    manifest["units"][0].update(file="unit0.skops", format="skops")
    (tmp_path / "m" / "unit0.skops").write_bytes(evil)
    manifest["files_sha256"]["unit0.skops"] = hashlib.sha256(evil).hexdigest()
    (tmp_path / "m" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="no longer loads"):
        polyhead.load(tmp_path / "m")


def test_manifest_cannot_name_arbitrary_classes(tmp_path):
    X, y = make_mixed(n=80)
    Separate(Ridge(), tasks={"amount": "regression"}).fit(X, y).save(tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    manifest["params"]["estimator"]["__estimator__"] = "os.system"
    (tmp_path / "m" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="'os.system', which is not allowed"):
        polyhead.load(tmp_path / "m")


@pytest.mark.parametrize("backend", ["hist", "lightgbm", "xgboost"])
def test_early_stopping_keeps_every_class_in_training(backend):
    """A rare label whose positives all fall in the early-stopping validation split still
    trains a two-class model (it once predicted with a one-class one and crashed)."""
    if backend != "hist":
        pytest.importorskip(backend)
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
    validation = np.random.default_rng(0).permutation(200)[:20]  # the split's first rows
    rare = np.zeros(200, dtype=int)
    rare[validation[:2]] = 1
    y = pd.DataFrame({"rare": rare, "common": (X["a"] > 0).astype(int)})
    model = MultiTaskGBM(tasks={"rare": "binary", "common": "binary"}, backend=backend,
                         n_estimators=10, early_stopping=True, random_state=0).fit(X, y)
    proba = np.asarray(model.predict_proba(X)["rare"])
    assert proba.shape == (200, 2) and np.all(np.isfinite(proba))
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)
    assert (proba[:, 1] > 0).all()  # the rare class is known, not a one-class constant


def test_default_boosting_does_not_collapse_on_many_rare_classes():
    """Abalone's 28 ring classes, several with a handful of rows: without early stopping,
    100 rounds at 0.1 diverged to accuracy 0.08, below always answering the commonest class
    (why the defaults keep early stopping)."""
    from polyhead.demo import abalone_split

    X_tr, X_te, y_tr, y_te = abalone_split()
    model = MultiTaskGBM(tasks={"rings_class": "multiclass"}, random_state=0).fit(X_tr, y_tr[["rings_class"]])
    majority = (y_te["rings_class"] == y_tr["rings_class"].mode()[0]).mean()
    assert (model.predict(X_te)["rings_class"] == y_te["rings_class"]).mean() > majority


@pytest.mark.parametrize("backend", ["hist", "lightgbm", "xgboost"])
def test_refit_trains_on_every_row_for_the_rounds_the_split_chose(backend):
    """early_stopping="refit": the validation split picks the rounds, then each output is
    trained again on all its rows, for those rounds scaled by the rows gained."""
    if backend != "hist":
        pytest.importorskip(backend)
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=400), "b": rng.normal(size=400)})
    y = pd.DataFrame({"amount": 3 * X["a"] + rng.normal(scale=0.5, size=400),
                      "sign": (X["b"] > 0).astype(int)})
    tasks = {"amount": "regression", "sign": "binary"}
    kw = dict(tasks=tasks, backend=backend, n_estimators=300, learning_rate=0.3, random_state=0)
    stopped = MultiTaskGBM(early_stopping=True, **kw).fit(X, y)
    refit = MultiTaskGBM(early_stopping="refit", **kw).fit(X, y)

    def rounds(model, i):
        unit = model.units_[i][1]
        if backend == "hist":
            return unit.n_iter_
        booster = unit.booster
        return booster.num_trees() if backend == "lightgbm" else booster.num_boosted_rounds()

    for i in range(2):
        assert 1 <= rounds(refit, i) < 300  # the split stopped it ...
    if backend == "hist":  # the stopped model's rounds (patience ones too), scaled by 400/320
        n_iter = stopped.units_[0][1].n_iter_
        assert rounds(refit, 0) == refit._refit_rounds(n_iter, 320, 400) == round(n_iter * 400 / 320)
    # ... and the refit saw every row: its training fit differs from the stopped model's
    assert not np.allclose(refit.predict(X)["amount"], stopped.predict(X)["amount"])
    again = MultiTaskGBM(early_stopping="refit", **kw).fit(X, y)
    np.testing.assert_array_equal(again.predict(X)["amount"], refit.predict(X)["amount"])
    assert refit.score(X, y) > 0.5


def test_cv_folds_cover_every_row_once_and_keep_every_class_in_training():
    gbm = MultiTaskGBM(validation_fraction=0.2, random_state=0)
    classes = np.array([0] * 50 + [1] * 49 + [2])  # class 2 seen once
    folds = gbm._folds(100, classes)
    assert len(folds) == 5
    held = np.concatenate([valid for _, valid in folds])
    assert len(held) == len(np.unique(held)) and set(held) <= set(range(100))
    assert len(held) == 99  # the lone class-2 row is never held out
    for train, valid in folds:
        assert not np.intersect1d(train, valid).size
        assert set(classes[train]) == {0, 1, 2}
        assert len(train) + len(valid) == 100
    assert len(MultiTaskGBM(validation_fraction=0.5)._folds(10)) == 2
    assert len(MultiTaskGBM(validation_fraction=0.9)._folds(10)) == 2  # at least two folds


@pytest.mark.parametrize("backend", ["hist", "lightgbm", "xgboost"])
def test_cv_trains_on_every_row_for_the_mean_of_the_folds_rounds(backend):
    """early_stopping="cv": each fold early-stops on its own held-out rows; the final booster
    trains on every row for the mean of the folds' rounds, each scaled by the rows gained."""
    if backend != "hist":
        pytest.importorskip(backend)
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=400), "b": rng.normal(size=400)})
    y = pd.DataFrame({"amount": 3 * X["a"] + rng.normal(scale=0.5, size=400)})
    tasks = {"amount": "regression"}
    kw = dict(tasks=tasks, backend=backend, n_estimators=300, learning_rate=0.3, random_state=0,
              validation_fraction=0.25)
    model = MultiTaskGBM(early_stopping="cv", **kw).fit(X, y)
    unit = model.units_[0][1]
    if backend == "hist":
        rounds = unit.n_iter_
    elif backend == "lightgbm":
        rounds = unit.booster.num_trees()
    else:
        rounds = unit.booster.num_boosted_rounds()
    # the same composition, recorded: k early-stopped folds, then one training on every row
    calls = []
    method = f"_train_{backend}"
    original = getattr(MultiTaskGBM, method)

    def record(self, slot, F, y, weight, rounds, fit=None, valid=None):
        out = original(self, slot, F, y, weight, rounds, fit, valid)
        calls.append((rounds, None if fit is None else len(fit), valid is not None, out[1]))
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(MultiTaskGBM, method, record)
        recorded = MultiTaskGBM(early_stopping="cv", **kw).fit(X, y)
    *folds, final = calls
    assert len(folds) == 4 and all(valid for _, _, valid, _ in folds)
    assert [n for _, n, _, _ in folds] == [300] * 4
    scaled = [model._refit_rounds(best, n, 400) for _, n, _, best in folds]
    assert final[:3] == (round(float(np.mean(scaled))), None, False) == (rounds, None, False)
    assert len(set(scaled)) > 1  # the folds disagree: one split alone would have chosen otherwise
    np.testing.assert_array_equal(recorded.predict(X)["amount"], model.predict(X)["amount"])
    assert 1 <= rounds < 300
    again = MultiTaskGBM(early_stopping="cv", **kw).fit(X, y)
    np.testing.assert_array_equal(again.predict(X)["amount"], model.predict(X)["amount"])
    assert model.score(X, y) > 0.5


@pytest.mark.parametrize("backend", ["hist", "lightgbm", "xgboost"])
def test_max_features_subsamples_the_features_of_each_split(backend, tmp_path):
    """max_features reaches each library (a different, seeded model), and survives saving."""
    if backend != "hist":
        pytest.importorskip(backend)
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(300, 6)), columns=list("abcdef"))
    y = pd.DataFrame({"amount": X.sum(axis=1) + rng.normal(scale=0.1, size=300),
                      "sign": (X["a"] > 0).astype(int)})
    kw = dict(tasks={"amount": "regression", "sign": "binary"}, backend=backend,
              n_estimators=30, early_stopping=False, random_state=0)
    full = MultiTaskGBM(max_features=1.0, **kw).fit(X, y)
    half = MultiTaskGBM(max_features=0.5, **kw).fit(X, y)
    again = MultiTaskGBM(max_features=0.5, **kw).fit(X, y)
    assert not np.allclose(half.predict(X)["amount"], full.predict(X)["amount"])
    pd.testing.assert_frame_equal(half.predict(X), again.predict(X))
    half.save(tmp_path / "m")
    loaded = polyhead.load(tmp_path / "m")
    assert loaded.max_features == 0.5
    pd.testing.assert_frame_equal(loaded.predict(X), half.predict(X))
    with pytest.raises(polyhead.PolyheadError, match="max_features"):
        MultiTaskGBM(max_features=0.0, **kw).fit(X, y)


def test_refit_rounds_scale_with_the_rows_gained():
    gbm = MultiTaskGBM(n_estimators=100)
    assert gbm._refit_rounds(45, 900, 1000) == 50
    assert gbm._refit_rounds(95, 900, 1000) == 100  # never past n_estimators
    assert gbm._refit_rounds(0, 900, 1000) == 1


def test_refit_model_round_trips(tmp_path):
    X, y = make_mixed(n=200)
    tasks = {"amount": "regression", "kind": "multiclass"}
    model = MultiTaskGBM(tasks=tasks, early_stopping="refit", n_estimators=50,
                         random_state=0).fit(X, y[list(tasks)])
    model.save(tmp_path / "m")
    loaded = polyhead.load(tmp_path / "m")
    assert loaded.early_stopping == "refit"
    pd.testing.assert_frame_equal(loaded.predict(X), model.predict(X))


def test_xgboost_early_stopping_predicts_with_the_best_round():
    """XGBoost's booster predicts with every tree; the rounds after the best one are dropped."""
    xgb = pytest.importorskip("xgboost")
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=400), "b": rng.normal(size=400)})
    y = pd.DataFrame({"amount": 3 * X["a"] + rng.normal(scale=0.5, size=400)})
    model = MultiTaskGBM(tasks={"amount": "regression"}, backend="xgboost", n_estimators=300,
                         learning_rate=0.3, early_stopping=True, max_features=1.0,
                         n_iter_no_change=20, random_state=0).fit(X, y)
    train, valid = model._split(400)
    F = X.to_numpy()
    reference = xgb.XGBRegressor(n_estimators=300, learning_rate=0.3, max_leaves=31, max_depth=0,
                                 tree_method="hist", grow_policy="lossguide", random_state=0,
                                 n_jobs=1, early_stopping_rounds=20)
    reference.fit(F[train], y["amount"].to_numpy()[train], eval_set=[(F[valid], y["amount"].to_numpy()[valid])],
                  verbose=False)
    assert reference.get_booster().num_boosted_rounds() == reference.best_iteration + 21
    booster = model.units_[0][1].booster
    assert booster.num_boosted_rounds() == reference.best_iteration + 1
    np.testing.assert_allclose(model.predict(X)["amount"], reference.predict(F), rtol=1e-5, atol=1e-5)
