"""Task kinds: each kind's contract, property tests, the registry, every family with every kind."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import FAST
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import polyhead
from polyhead import PolyheadError, Task, TaskError
from polyhead.kinds import KINDS, Kind, Regression, get_kind, register_kind
from polyhead.tasks import fit_task, resolve_tasks, task_from_dict

finite = st.floats(-1e6, 1e6, allow_nan=False, width=32)


def fitted(task: Task, y: pd.DataFrame) -> Kind:
    return fit_task(resolve_tasks([task], y)[0], y)


def mixed_kinds(n: int = 400, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n),
                      "c": rng.choice(["x", "y"], n)})
    grade = np.digitize(X.a + 0.3 * rng.normal(size=n), [-1, 0, 1])
    y = pd.DataFrame({
        "visits": rng.poisson(np.exp(1 + 0.5 * X.a)),
        "grade": np.array(["low", "mid", "high", "top"])[grade],
        "y": 2 * X.a + rng.normal(size=n),
    })
    return X, y


NEW_TASKS = [Task("visits", kind="count"),
             Task("grade", kind="ordinal", classes=["low", "mid", "high", "top"]),
             Task("y", kind="quantile", quantiles=(0.1, 0.5, 0.9))]


# -- property tests --------------------------------------------------------------------------
@given(hnp.arrays(np.float64, st.integers(2, 40), elements=finite))
@settings(max_examples=50, deadline=None)
def test_regression_encode_then_output_round_trips(values):
    y = pd.DataFrame({"t": values})
    state = fitted(Task("t", kind="regression"), y)
    z, mask = state.encode(y)
    assert mask.all()
    back = state.output(torch.from_numpy(z).double().unsqueeze(-1)).numpy()
    np.testing.assert_allclose(back, values, rtol=1e-4, atol=1e-4 * (1 + np.abs(values).max()))


@given(st.lists(st.sampled_from(["a", "b", "c", 1, 2]), min_size=4, max_size=30),
       st.sampled_from(["multiclass", "ordinal"]))
@settings(max_examples=50, deadline=None)
def test_class_labels_encode_then_predict_round_trips(labels, kind):
    types = {type(v) for v in labels}
    if len(set(labels)) < 2 or len(types) > 1:
        return
    order = sorted(set(labels)) if types == {str} else None
    y = pd.DataFrame({"t": pd.Series(labels, dtype=object)})
    state = fitted(Task("t", kind=kind, classes=order if kind == "ordinal" else None), y)
    codes, _ = state.encode(y)
    proba = np.eye(len(state.classes))[codes]
    assert state.predict(state.from_proba(proba)).tolist() == labels


@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 20), st.integers(1, 8)),
                  elements=st.floats(-30, 30, width=32)))
@settings(max_examples=80, deadline=None)
def test_ordinal_head_is_rank_consistent(raw):
    state = fitted(Task("t", kind="ordinal"), pd.DataFrame({"t": list(range(raw.shape[1] + 1)) * 2}))
    proba = state.output(torch.from_numpy(raw)).numpy()
    assert proba.shape == (raw.shape[0], raw.shape[1] + 1)
    assert (proba >= 0).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    above = 1 - np.cumsum(proba, axis=1)[:, :-1]  # P(y > c_k)
    assert (np.diff(above, axis=1) <= 1e-6).all()


@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 20), st.integers(1, 6)),
                  elements=st.floats(0, 1)))
@settings(max_examples=50, deadline=None)
def test_ordinal_from_tree_slots_is_a_distribution(above):
    k = above.shape[1] + 1
    state = fitted(Task("t", kind="ordinal"), pd.DataFrame({"t": list(range(k)) * 2}))
    results = {f"t[>{j}]": np.column_stack([1 - above[:, j], above[:, j]]) for j in range(k - 1)}
    proba = state.from_slots(results)
    assert (proba >= 0).all() and np.allclose(proba.sum(axis=1), 1.0)


@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 20), st.integers(1, 5)),
                  elements=st.floats(-50, 50, width=32)))
@settings(max_examples=80, deadline=None)
def test_quantiles_never_cross(raw):
    qs = tuple(np.linspace(0.1, 0.9, raw.shape[1]).round(3))
    state = fitted(Task("t", kind="quantile", quantiles=qs), pd.DataFrame({"t": np.arange(10.0)}))
    values = state.output(torch.from_numpy(raw)).numpy()
    assert (np.diff(values, axis=1) >= 0).all()
    slots = state.from_slots({f"t[q{q:g}]": raw[:, j].astype(float) for j, q in enumerate(qs)})
    assert (np.diff(slots, axis=1) >= 0).all()


@given(hnp.arrays(np.float32, st.integers(1, 30), elements=st.floats(-100, 100, width=32)))
@settings(max_examples=50, deadline=None)
def test_counts_are_never_negative(raw):
    state = fitted(Task("t", kind="count"), pd.DataFrame({"t": [0, 1, 5, 2]}))
    mu = state.output(torch.from_numpy(raw).unsqueeze(-1)).numpy()
    assert (mu >= 0).all() and np.isfinite(mu).all()


@given(st.sampled_from(sorted(KINDS)))
@settings(max_examples=20, deadline=None)
def test_fitted_state_round_trips_through_json(kind):
    import json

    _, y = mixed_kinds(60)
    y = y.assign(flag=y["y"] > 0, cls=np.arange(60) % 3, t1=np.arange(60) % 2, t2=1 - np.arange(60) % 2)
    tasks = {"regression": Task("y", kind="regression"), "binary": Task("flag", kind="binary"),
             "multiclass": Task("cls", kind="multiclass"),
             "multilabel": Task("tags", kind="multilabel", columns=["t1", "t2"]),
             "ordinal": NEW_TASKS[1], "count": NEW_TASKS[0], "quantile": NEW_TASKS[2]}
    state = fitted(tasks[kind], y)
    again = task_from_dict(json.loads(json.dumps(state.to_dict())))
    assert again.to_dict() == state.to_dict()
    assert type(again) is type(state)


# -- each kind's errors --------------------------------------------------------------------------
@pytest.mark.parametrize("values, match", [
    ([1, -2, 3], "a count must be a whole number >= 0, found -2 at row 1"),
    ([1, 2.5, 3], "found 2.5 at row 1"),
])
def test_bad_counts(values, match):
    with pytest.raises(TaskError, match=match):
        fitted(Task("n", kind="count"), pd.DataFrame({"n": values}))


def test_ordinal_errors():
    with pytest.raises(TaskError, match="'huge' at row 2 is not one of the declared classes"):
        fitted(Task("g", kind="ordinal", classes=["low", "high"]),
               pd.DataFrame({"g": ["low", "high", "huge"]}))
    with pytest.raises(TaskError, match="ordinal labels of text need their order"):
        fitted(Task("g", kind="ordinal"), pd.DataFrame({"g": ["low", "high"]}))
    with pytest.raises(TaskError, match="classes= is only for ordinal tasks"):
        resolve_tasks([Task("g", kind="multiclass", classes=["a", "b"])], pd.DataFrame({"g": ["a", "b"]}))
    cat = pd.Categorical(["lo", "hi", "mid"], categories=["lo", "mid", "hi"], ordered=True)
    assert fitted(Task("g", kind="ordinal"), pd.DataFrame({"g": cat})).classes.tolist() == ["lo", "mid", "hi"]


@pytest.mark.parametrize("quantiles, match", [
    ((0.5, 1.2), "strictly between 0 and 1"), ((0.0, 0.5), "strictly between 0 and 1"),
    ((0.9, 0.1), "sorted and distinct"), ((0.5, 0.5), "sorted and distinct"),
    (None, "needs quantiles="),
])
def test_bad_quantiles(quantiles, match):
    with pytest.raises(TaskError, match=match):
        resolve_tasks([Task("y", kind="quantile", quantiles=quantiles)], pd.DataFrame({"y": [1.0, 2.0]}))


def test_kinds_are_never_inferred_as_the_new_ones():
    from polyhead.tasks import infer_kind

    assert infer_kind(pd.Series([0, 3, 1, 7])) == "regression"  # counts look like numbers
    assert infer_kind(pd.Series([1, 2, 3, 2])) == "regression"


# -- predictions ---------------------------------------------------------------------------------
def test_new_kinds_in_one_net():
    X, y = mixed_kinds()
    model = polyhead.MultiTaskNet(tasks=NEW_TASKS, **{**FAST, "max_epochs": 40}).fit(X, y)
    pred = model.predict(X.head(5))
    assert list(pred.columns) == ["visits", "grade", "y:q0.1", "y:q0.5", "y:q0.9"]
    assert (pred["visits"] >= 0).all()
    assert set(pred["grade"]) <= {"low", "mid", "high", "top"}
    assert (pred["y:q0.1"] <= pred["y:q0.5"]).all() and (pred["y:q0.5"] <= pred["y:q0.9"]).all()
    expected = model.predict(X.head(5), expected=True)
    assert expected["grade"].between(0, 3).all()  # text classes: the expected rank
    proba = model.predict_proba(X.head(5))
    assert list(proba) == ["grade"] and np.allclose(proba["grade"].sum(axis=1), 1)
    table = model.evaluate(X, y)
    assert {"poisson_deviance", "d2", "qwk", "pinball", "coverage", "width", "pinball_q0.1"} <= set(table.columns)
    assert table.loc["grade", "kind"] == "ordinal"


def test_ordinal_expected_value_is_in_units_for_numeric_classes():
    X, _ = mixed_kinds()
    stars = pd.DataFrame({"stars": np.digitize(X.a, [-1, 0, 1]) * 2 + 1})  # 1, 3, 5, 7
    model = polyhead.MultiTaskNet(tasks={"stars": "ordinal"}, **FAST).fit(X, stars)
    expected = model.predict(X.head(20), expected=True)["stars"]
    assert expected.between(1, 7).all()
    assert set(model.predict(X)["stars"]) <= {1, 3, 5, 7}


ALL_FAMILIES = {
    "net": lambda: polyhead.MultiTaskNet(**FAST),
    "ensemble": lambda: polyhead.MultiTaskNet(n_ensemble=3, **FAST),
    "forest": lambda: polyhead.MultiTaskForest(n_estimators=10, random_state=0),
    "hist": lambda: polyhead.MultiTaskGBM(n_estimators=20, random_state=0),
    "lightgbm": lambda: polyhead.MultiTaskGBM(backend="lightgbm", n_estimators=20, random_state=0),
    "xgboost": lambda: polyhead.MultiTaskGBM(backend="xgboost", n_estimators=20, random_state=0),
    "linear": lambda: polyhead.MultiTaskLinear(),
    "separate": lambda: polyhead.Separate(polyhead.MultiTaskNet(**FAST)),
    "chain": lambda: polyhead.TaskChain(polyhead.MultiTaskLinear(), cv=2, random_state=0),
    "single": lambda: polyhead.SingleTarget({"regression": __import__("sklearn.linear_model").linear_model.Ridge(),
                                             "classification": __import__("sklearn.linear_model").linear_model.LogisticRegression()}),
}


@pytest.mark.parametrize("family", list(ALL_FAMILIES))
@pytest.mark.parametrize("task", NEW_TASKS, ids=lambda t: t.kind)
def test_every_family_fits_each_new_kind_or_refuses_in_one_line(family, task, tmp_path):
    if family in ("lightgbm", "xgboost"):
        pytest.importorskip(family)
    X, y = mixed_kinds(200)
    model = ALL_FAMILIES[family]().set_params(tasks=[task])
    refuses = (family == "forest" and task.kind == "quantile") or (
        family == "single" and task.kind in ("count", "quantile"))
    if refuses:
        with pytest.raises(PolyheadError, match=f"cannot fit task {task.name!r} \\({task.kind}\\): it has no"):
            model.fit(X, y)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
    pred = model.predict(X.head(10))
    assert pred.shape[0] == 10 and np.isfinite(pred.select_dtypes("number").to_numpy()).all()
    model.save(tmp_path / "m")
    assert polyhead.load(tmp_path / "m").predict(X.head(10)).equals(pred)


# -- the registry --------------------------------------------------------------------------------
def test_a_kind_registered_from_outside_works_end_to_end(tmp_path):
    @register_kind
    class LogRegression(Regression):
        """Regression on log1p(y): the network learns log1p, predictions come back in units."""

        kind = "log_regression_test"

        def values(self, y):
            return np.log1p(super().values(y))

        def output(self, raw):
            return torch.expm1(super().output(raw))

        def metrics(self, y, outputs):
            return super().metrics(pd.DataFrame({self.task.source_columns[0]: np.log1p(
                y[self.task.source_columns[0]])}), np.log1p(outputs))

    try:
        X, _ = mixed_kinds()
        y = pd.DataFrame({"price": np.exp(1 + X.a)})
        model = polyhead.MultiTaskNet(tasks={"price": "log_regression_test"}, **FAST).fit(X, y)
        assert model.tasks_["price"].kind == "log_regression_test"
        assert (model.predict(X.head(5))["price"] > 0).all()
        model.save(tmp_path / "m")
        assert polyhead.load(tmp_path / "m").predict(X.head(5)).equals(model.predict(X.head(5)))
        assert get_kind("log_regression_test") is LogRegression
    finally:
        KINDS.pop("log_regression_test", None)


# -- the command line ----------------------------------------------------------------------------
@pytest.mark.parametrize("spec, task", [
    ("visits:count", Task("visits", kind="count")),
    ("grade:ordinal", Task("grade", kind="ordinal")),
    ("grade:ordinal(low,mid,high)", Task("grade", kind="ordinal", classes=("low", "mid", "high"))),
    ("stars:ordinal(1,2,3)=rating", Task("stars", kind="ordinal", column="rating", classes=(1, 2, 3))),
    ("y:quantile(0.1,0.5,0.9)", Task("y", kind="quantile", quantiles=(0.1, 0.5, 0.9))),
])
def test_cli_task_syntax(spec, task):
    assert Task.parse(spec) == task


def test_cli_fits_new_kinds_and_conditions(tmp_path, capsys):
    from polyhead.cli import main

    X, y = mixed_kinds(150)
    frame = pd.concat([X, y], axis=1).assign(buys=X.b > 0)
    frame["amount"] = np.where(frame.buys, 10 + X.a, 0.0)
    frame.to_csv(tmp_path / "d.csv", index=False)
    args = ["fit", str(tmp_path / "d.csv"), "-t", "visits:count", "-t",
            "grade:ordinal(low,mid,high,top)", "-t", "y:quantile(0.1,0.9)", "-t", "buys",
            "-t", "amount:regression", "--given", "amount:buys", "--otherwise", "amount=0",
            "-o", str(tmp_path / "m"), "--param", "max_epochs=5", "--json"]
    try:
        main(args)
    except SystemExit as exc:
        assert exc.code == 0, capsys.readouterr().err
    model = polyhead.load(tmp_path / "m")
    assert model.tasks_["amount"].given == "buys" and model.tasks_["amount"].otherwise == 0
    assert model.tasks_["y"].quantiles == (0.1, 0.9)
