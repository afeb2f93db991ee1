"""Conditional tasks (given=, otherwise=) and per-row / per-(row, task) sample weights."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import FAST, make_mixed

import polyhead
from polyhead import PolyheadError, Task, TaskError


def hurdle(n: int = 400, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"visits": rng.poisson(3, n).astype(float), "tenure": rng.normal(size=n)})
    buys = X.visits + rng.normal(size=n) > 3
    y = pd.DataFrame({"buys": buys, "amount": np.where(buys, 20 + 5 * X.tenure, 0.0)})
    return X, y


TASKS = [Task("buys", kind="binary"), Task("amount", kind="regression", given="buys", otherwise=0.0)]
FAMILIES = {
    "net": lambda: polyhead.MultiTaskNet(**{**FAST, "max_epochs": 80, "hidden": (32,)}),
    "gbm": lambda: polyhead.MultiTaskGBM(n_estimators=80, random_state=0),
    "forest": lambda: polyhead.MultiTaskForest(n_estimators=30, random_state=0),
    "linear": lambda: polyhead.MultiTaskLinear(),
    "separate": lambda: polyhead.Separate(polyhead.MultiTaskGBM(n_estimators=80), random_state=0),
    "chain": lambda: polyhead.TaskChain(polyhead.MultiTaskGBM(n_estimators=80), cv=3, random_state=0),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_amount_trains_only_where_the_condition_holds(family):
    """The amount's labels where buys is false are nonsense (1e4): a model that trained on them
    would be far off; a conditional one never sees them."""
    X, y = hurdle()
    poisoned = y.assign(amount=np.where(y.buys, y.amount, 1e4))
    model = FAMILIES[family]().set_params(tasks=TASKS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, poisoned)
    pred = model.predict(X)
    buys_pred = pred["buys"].to_numpy(dtype=bool)
    assert (pred["amount"][~buys_pred] == 0.0).all()  # otherwise where the condition is false
    both = buys_pred & y.buys.to_numpy()
    assert np.abs(pred["amount"][both] - y.amount[both]).median() < 3.0
    expected = model.predict(X, expected=True)
    p = model.predict_proba(X)["buys"][True].to_numpy()
    np.testing.assert_allclose(expected["amount"], p * model._predict_outputs(
        model._check_X(X, fit=False))["amount"], rtol=1e-6)


def test_otherwise_none_gives_missing_and_expected_needs_it():
    X, y = hurdle()
    tasks = [Task("buys"), Task("amount", kind="regression", given="buys")]
    model = polyhead.MultiTaskNet(tasks=tasks, **FAST).fit(X, y)
    pred = model.predict(X)
    assert pred["amount"][~pred["buys"].astype(bool)].isna().all()
    with pytest.raises(TaskError, match="expected=True needs the value where its condition is false"):
        model.predict(X, expected=True)


def test_a_multiclass_condition_and_a_chain_of_conditions():
    rng = np.random.default_rng(1)
    n = 500
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    grade = np.array(["low", "mid", "high"])[np.digitize(X.a, [-0.5, 0.5])]
    visits = X.b > -0.5
    buys = visits & (X.a > 0)
    y = pd.DataFrame({"grade": grade, "visits": visits, "buys": buys,
                      "bonus": np.where(grade == "high", 5 + X.b, 0.0),
                      "amount": np.where(buys, 10 + X.b, 0.0)})
    tasks = [Task("grade"), Task("visits"), Task("buys", given="visits", otherwise=False),
             Task("bonus", kind="regression", given="grade=high", otherwise=0.0),
             Task("amount", kind="regression", given="buys", otherwise=0.0)]
    model = polyhead.MultiTaskGBM(tasks=tasks, n_estimators=50, random_state=0).fit(X, y)
    pred = model.predict(X)
    assert (pred["buys"][~pred["visits"].astype(bool)] == False).all()  # noqa: E712
    assert (pred["amount"][~pred["buys"].astype(bool)] == 0).all()
    assert (pred["bonus"][pred["grade"] != "high"] == 0).all()
    proba = model.predict_proba(X)["buys"][True].to_numpy()
    outputs = model._predict_outputs(model._check_X(X, fit=False))
    np.testing.assert_allclose(proba, outputs["visits"] * outputs["buys"], rtol=1e-6)
    table = model.evaluate(X, y)
    assert table.loc["amount", "n"] == n and table.loc["amount", "mae"] < 1.5


@pytest.mark.parametrize("tasks, match", [
    ([Task("a", kind="binary", given="c"), Task("c", kind="binary", given="a")],
     "conditions form a cycle: a -> c -> a"),
    ([Task("a", given="nope")], "given 'nope', which is not a task"),
    ([Task("a", kind="regression"), Task("b", kind="regression", given="a")],
     "a regression task; a condition must be a task with classes"),
    ([Task("g", kind="multiclass"), Task("b", kind="regression", given="g")],
     "name the class, e.g. given=\"g=<class>\""),
    ([Task("a", kind="regression", otherwise=0.0)], "otherwise= needs a condition"),
])
def test_bad_conditions_are_one_line_errors(tasks, match):
    y = pd.DataFrame({"a": [0, 1, 0, 1], "b": [1.0, 2, 3, 4], "c": [1, 1, 0, 0],
                      "g": ["x", "y", "z", "x"], "nope": [1, 2, 3, 4]})
    with pytest.raises(TaskError, match=match):
        polyhead.MultiTaskNet(tasks=tasks, **FAST).fit(pd.DataFrame({"x": [1.0, 2, 3, 4]}), y)


def test_a_condition_on_a_class_that_does_not_exist():
    y = pd.DataFrame({"g": ["x", "y", "x", "y"], "v": [1.0, 2, 3, 4]})
    tasks = [Task("g"), Task("v", kind="regression", given="g=zz")]
    with pytest.raises(TaskError, match="task 'g' has no class 'zz'"):
        polyhead.MultiTaskNet(tasks=tasks, **FAST).fit(pd.DataFrame({"x": [1.0, 2, 3, 4]}), y)


def test_conditional_tasks_are_saved_and_served_by_every_path(tmp_path):
    X, y = hurdle()
    model = polyhead.MultiTaskNet(tasks=TASKS, **FAST).fit(X, y)
    model.save(tmp_path / "m")
    again = polyhead.load(tmp_path / "m")
    assert again.predict(X).equals(model.predict(X))
    frame = again.predict_frame(X.head(3), proba=True)
    assert {"buys", "amount", "buys:True", "buys:False"} <= set(frame.columns)


# -- sample weights ----------------------------------------------------------------------------
def test_zero_weights_equal_missing_labels_in_the_net():
    X, y = make_mixed(200)
    y = y[["amount", "kind"]]
    blank = np.arange(200) % 3 == 0
    weights = pd.DataFrame({"amount": np.where(blank, 0.0, 1.0)})
    a = polyhead.MultiTaskNet(**FAST).fit(X, y, sample_weight=weights)
    b = polyhead.MultiTaskNet(**FAST).fit(X, y.assign(amount=y.amount.where(~blank)))
    np.testing.assert_array_equal(a.predict(X)["amount"], b.predict(X)["amount"])


@pytest.mark.parametrize("family", ["net", "forest", "gbm", "linear", "separate", "chain"])
def test_weights_pull_every_family_towards_the_heavy_rows(family):
    rng = np.random.default_rng(0)
    n = 400
    X = pd.DataFrame({"a": rng.normal(size=n)})
    group = np.arange(n) % 2 == 0
    y = pd.DataFrame({"t": np.where(group, 10.0, 0.0) + rng.normal(scale=0.1, size=n)})
    X = X.assign(a=X.a * 0.0)  # nothing to tell the groups apart: the fit is a weighted mean
    heavy = np.where(group, 9.0, 1.0)
    make = {"net": lambda: polyhead.MultiTaskNet(**FAST),
            "forest": lambda: polyhead.MultiTaskForest(n_estimators=10, random_state=0),
            "gbm": lambda: polyhead.MultiTaskGBM(n_estimators=30, random_state=0),
            "linear": lambda: polyhead.MultiTaskLinear(alpha=0.0),
            "separate": lambda: polyhead.Separate(polyhead.MultiTaskLinear(alpha=0.0)),
            "chain": lambda: polyhead.TaskChain(polyhead.MultiTaskLinear(alpha=0.0), cv=2)}[family]
    plain = make().fit(X, y).predict(X.head(1))["t"].iloc[0]
    weighted = make().fit(X, y, sample_weight=heavy).predict(X.head(1))["t"].iloc[0]
    assert plain == pytest.approx(5.0, abs=1.0)
    assert weighted == pytest.approx(9.0, abs=1.0)


def test_per_task_weights_follow_the_columns_of_y():
    n = 300
    X = pd.DataFrame({"a": np.zeros(n)})
    y = pd.DataFrame({"u": np.where(np.arange(n) < 150, 1.0, 3.0), "v": np.where(np.arange(n) < 150, 1.0, 3.0)})
    weights = pd.DataFrame({"u": np.where(np.arange(n) < 150, 1.0, 0.0)})  # v: all weight 1
    model = polyhead.MultiTaskLinear(alpha=0.0).fit(X, y, sample_weight=weights)
    pred = model.predict(X.head(1)).iloc[0]
    assert pred["u"] == pytest.approx(1.0, abs=1e-6) and pred["v"] == pytest.approx(2.0, abs=1e-6)


@pytest.mark.parametrize("weight, match", [
    (np.ones(5), "one weight per row \\(40\\)"),
    (-np.ones(40), "finite and >= 0, got -1.0 at row 0"),
    (np.r_[np.nan, np.ones(39)], "finite and >= 0"),
    (pd.DataFrame({"zzz": np.ones(40)}), "sample_weight column 'zzz' is not a column of y"),
    (np.zeros(40), "the sample weights of its labelled rows are all zero"),
])
def test_bad_sample_weights(weight, match):
    X, y = make_mixed(40)
    with pytest.raises(PolyheadError, match=match):
        polyhead.MultiTaskNet(**FAST).fit(X, y[["amount"]], sample_weight=weight)


# -- a label constant in the training rows -------------------------------------------------------
@pytest.mark.parametrize("family", ["net", "forest", "gbm", "lightgbm", "xgboost", "linear",
                                    "separate", "chain"])
def test_a_constant_multilabel_label_is_learnt_as_that_constant(family, tmp_path):
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=120)})
    y = pd.DataFrame({"t1": (X.a > 0).astype(int), "t2": np.zeros(120, int)})
    task = [Task("tags", kind="multilabel", columns=["t1", "t2"])]
    if family in ("lightgbm", "xgboost"):
        pytest.importorskip(family)
    make = {"net": lambda: polyhead.MultiTaskNet(**FAST),
            "forest": lambda: polyhead.MultiTaskForest(n_estimators=5, random_state=0),
            "gbm": lambda: polyhead.MultiTaskGBM(n_estimators=10),
            "lightgbm": lambda: polyhead.MultiTaskGBM(backend="lightgbm", n_estimators=10),
            "xgboost": lambda: polyhead.MultiTaskGBM(backend="xgboost", n_estimators=10),
            "linear": lambda: polyhead.MultiTaskLinear(),
            "separate": lambda: polyhead.Separate(polyhead.MultiTaskLinear()),
            "chain": lambda: polyhead.TaskChain(polyhead.MultiTaskLinear(), cv=2)}[family]
    model = make().set_params(tasks=task).fit(X, y)
    proba = model.predict_proba(X)["tags"]
    assert (model.predict(X)["t2"] == 0).all()
    assert proba["t2"].max() < 0.2
    model.save(tmp_path / "m")
    assert polyhead.load(tmp_path / "m").predict(X).equals(model.predict(X))
