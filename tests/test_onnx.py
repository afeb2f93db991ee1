"""ONNX export: onnxruntime gives the same labels, values within 1e-4 relative and
probabilities within 1e-5, for every kind, ensembles, embeddings and the encoder (issue 14)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import FAST, MIXED_TASKS, cli, make_mixed, shared_data

import polyhead
from polyhead import PolyheadError, Task

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from polyhead.io.onnx import feeds  # noqa: E402


def run_onnx(path, model, X):
    session = ort.InferenceSession(str(path))
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feeds(X, model.features_.columns_)), strict=True))


def assert_same(model, X, got):
    pred = model.predict(X)
    for t in model.task_states_:
        columns = t.output_columns
        expected = pred[columns].to_numpy() if len(columns) > 1 else pred[t.name].to_numpy()
        value = got[t.name]
        if t.classes is not None or value.dtype.kind in "iub" or value.dtype == object:
            assert (value.reshape(expected.shape) == expected).all(), t.name
        else:
            scale = max(1.0, float(np.abs(expected).max()))
            np.testing.assert_allclose(value.reshape(expected.shape), expected, rtol=1e-4,
                                       atol=1e-4 * scale, err_msg=t.name)
        if t.has_proba:
            proba = model.predict_proba(X)[t.name].to_numpy()
            np.testing.assert_allclose(got[f"{t.name}_proba"], proba, atol=1e-5, err_msg=t.name)


def _with_new_rows(X):
    """Unseen categories, missing categories and missing numbers the model must handle."""
    X = X.copy()
    X["colour"] = X["colour"].astype(object)
    X.loc[X.index[:4], "colour"] = "never-seen"
    X.loc[X.index[4:7], "colour"] = None
    X.loc[X.index[7:10], "a"] = np.nan
    return X


KIND_TASKS = {
    "regression+binary+multiclass": (MIXED_TASKS, {}),
    "multilabel": ({"tags": Task("tags", kind="multilabel", columns=["t1", "t2", "t3"])}, {}),
    "ordinal+count+quantile": ([Task("level", kind="ordinal"),
                                Task("n", kind="count", column="level"),
                                Task("band", kind="quantile", column="amount",
                                     quantiles=(0.1, 0.5, 0.9))], {}),
    "ensemble-packed": (MIXED_TASKS, {"n_ensemble": 4}),
    "ensemble-batch": (MIXED_TASKS, {"n_ensemble": 4, "ensemble": "batch"}),
    "ple+codes": (MIXED_TASKS, {"numeric_embedding": "ple", "embed_above": 1}),
    "periodic+robust": (MIXED_TASKS, {"numeric_embedding": "periodic", "numeric": "robust"}),
    "mmoe+head layers": (MIXED_TASKS, {"experts": 2, "head_hidden": (8,)}),
    "per-task best epoch": (MIXED_TASKS, {"best_epoch": "per_task", "n_ensemble": 2}),
}


@pytest.mark.parametrize("case", list(KIND_TASKS))
def test_onnxruntime_matches_predict(case, tmp_path):
    tasks, params = KIND_TASKS[case]
    X, y = make_mixed(160, missing=0.05)
    model = polyhead.MultiTaskNet(tasks=tasks, **{**FAST, "max_epochs": 6, **params}).fit(X, y)
    path = model.to_onnx(tmp_path / "m.onnx")
    X_new = _with_new_rows(X)
    assert_same(model, X_new, run_onnx(path, model, X_new))


def test_penguins_export_matches(tmp_path):
    """Real data: mixed kinds, missing values and a categorical feature."""
    data = pd.read_csv(shared_data("penguins") / "penguins.csv")
    targets = ["species", "sex", "body_mass_g"]
    data = data.dropna(subset=["species"])
    X = data.drop(columns=targets)
    model = polyhead.MultiTaskNet(tasks={"species": "multiclass", "sex": "binary",
                                         "body_mass_g": "regression"},
                                  **{**FAST, "preset": "default", "max_epochs": 10}).fit(X, data[targets])
    path = model.to_onnx(tmp_path / "p.onnx")
    assert_same(model, X, run_onnx(path, model, X))


FAMILY_TASKS = [*(Task(n, kind=k) for n, k in MIXED_TASKS.items()),
                Task("tags", kind="multilabel", columns=("t1", "t2", "t3")),
                Task("n", kind="count", column="level")]


@pytest.mark.parametrize("family", ["forest", "extra_trees", "linear"])
def test_tree_and_linear_families_export_through_skl2onnx(family, tmp_path):
    pytest.importorskip("skl2onnx")
    X, y = make_mixed(160, missing=0.05)
    model = (polyhead.MultiTaskLinear(tasks=FAMILY_TASKS) if family == "linear" else
             polyhead.MultiTaskForest(tasks=FAMILY_TASKS, n_estimators=5, random_state=0,
                                      kind="random_forest" if family == "forest" else "extra_trees"))
    model.fit(X, y)
    path = model.to_onnx(tmp_path / "m.onnx")
    X_new = _with_new_rows(X)
    assert_same(model, X_new, run_onnx(path, model, X_new))


def test_an_unexportable_kind_is_refused_before_skl2onnx_is_asked_for(tmp_path, monkeypatch):
    """Without skl2onnx, a forest with an ordinal task gets the kind's own line (installing
    skl2onnx would not help), not "install skl2onnx"."""
    import sys

    X, y = make_mixed(80)
    ordinal = polyhead.MultiTaskForest(tasks=[Task("level", kind="ordinal")], n_estimators=3).fit(X, y)
    monkeypatch.setitem(sys.modules, "skl2onnx", None)  # as if it were not installed
    with pytest.raises(PolyheadError, match="not supported for ordinal tasks"):
        polyhead.io.onnx.to_onnx(ordinal, tmp_path / "o.onnx")
    assert not (tmp_path / "o.onnx").exists()


def test_export_refuses_what_it_cannot_express_in_one_line(tmp_path):
    X, y = make_mixed(80)
    gbm = polyhead.MultiTaskGBM(tasks={"amount": "regression"}, n_estimators=3).fit(X, y)
    with pytest.raises(PolyheadError, match="not supported for MultiTaskGBM"):
        gbm.to_onnx(tmp_path / "g.onnx")
    ordinal = polyhead.MultiTaskForest(tasks=[Task("level", kind="ordinal")], n_estimators=3).fit(X, y)
    with pytest.raises(PolyheadError, match="not supported for ordinal tasks"):
        polyhead.io.onnx.to_onnx(ordinal, tmp_path / "o.onnx")
    hurdle = polyhead.MultiTaskNet(tasks=[Task("kind", kind="binary"),
                                          Task("amount", kind="regression", given="kind=yes",
                                               otherwise=0.0)], **FAST).fit(X, y)
    with pytest.raises(PolyheadError, match="conditional tasks"):
        hurdle.to_onnx(tmp_path / "h.onnx")
    assert not list(tmp_path.iterdir())


def test_export_from_the_shell(tmp_path, capsys):
    X, y = make_mixed(80)
    model = polyhead.MultiTaskNet(tasks=MIXED_TASKS, **FAST).fit(X, y)
    model.save(tmp_path / "m")
    code, _, err = cli(capsys, "export", tmp_path / "m", "--format", "onnx", "-o", tmp_path / "m.onnx")
    assert code == 0, err
    assert_same(model, X, run_onnx(tmp_path / "m.onnx", model, X))
    code, _, err = cli(capsys, "export", tmp_path / "m", "-o", tmp_path / "m.onnx")
    assert code == 2 and "--force" in err                   # never replaced without --force
    code, _, err = cli(capsys, "export", tmp_path / "m", "--format", "tflite", "-o", tmp_path / "x.onnx")
    assert code == 2 and "unknown --format" in err
