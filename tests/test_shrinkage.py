"""shrinkage="auto" in the tree and linear families: a regression output the model cannot
predict is pulled toward its training mean by the factor its held-out rows support (out-of-bag
rows, early-stopping validation rows, cross-fitted folds); a predictable one is left whole."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import cli

import polyhead
from polyhead.exceptions import ModelFileError
from polyhead.models import shrinkage


def frame(n: int = 400, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Twelve numeric features; "signal" depends on two of them, "noise" on none."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 12)), columns=[f"x{i}" for i in range(12)])
    y = pd.DataFrame({"signal": 3 * X["x0"] + X["x1"] + rng.normal(scale=0.3, size=n),
                      "noise": 5 + rng.normal(size=n)})
    return X, y


def make(family: str, mode: str):
    if family == "forest":
        return polyhead.MultiTaskForest(n_estimators=40, random_state=0, shrinkage=mode)
    if family == "gbm":
        return polyhead.MultiTaskGBM(n_estimators=60, learning_rate=0.2, random_state=0,
                                     shrinkage=mode)
    if family == "gbm-cv":
        return polyhead.MultiTaskGBM(n_estimators=60, learning_rate=0.2, random_state=0,
                                     early_stopping="cv", shrinkage=mode)
    return polyhead.MultiTaskLinear(alpha=0.0001, random_state=0, shrinkage=mode)


FAMILIES = ["forest", "gbm", "gbm-cv", "linear"]


@pytest.mark.parametrize("family", FAMILIES)
def test_an_unpredictable_output_is_shrunk_and_a_predictable_one_is_not(family):
    X, y = frame()
    shrunk, plain = make(family, "auto").fit(X, y), make(family, "none").fit(X, y)
    assert set(shrunk.shrinkage_) == {"noise"} and plain.shrinkage_ == {}
    factor, _ = shrunk.shrinkage_["noise"]
    assert 0 <= factor < 1
    X_new, y_new = frame(seed=1)
    a, b = shrunk.predict(X_new), plain.predict(X_new)
    np.testing.assert_array_equal(a["signal"], b["signal"])
    # the same predictions, their spread around the training mean scaled by the factor
    mean = y["noise"].mean()
    np.testing.assert_allclose(a["noise"] - mean, factor * (b["noise"] - mean), atol=1e-9)
    err = {name: float(np.mean((p["noise"] - y_new["noise"]) ** 2)) for name, p in
           (("shrunk", a), ("plain", b))}
    assert err["shrunk"] < err["plain"]


def test_the_factor_is_the_held_out_least_squares_one_kept_only_beyond_noise():
    rng = np.random.default_rng(3)
    truth = rng.normal(size=500)
    half = 0.5 * truth + rng.normal(size=500)       # a model with some signal, too spread out
    factor = shrinkage.choose(half, truth, 0.0)
    expected = float(np.sum(half * truth) / np.sum(half ** 2))
    assert factor == pytest.approx(expected) and 0 < factor < 1
    assert shrinkage.choose(half[:shrinkage.MIN_ROWS - 1], truth[:shrinkage.MIN_ROWS - 1], 0.0) is None
    assert shrinkage.choose(np.zeros(100), truth[:100], 0.0) is None   # nothing to shrink
    assert shrinkage.choose(truth, truth, 0.0) is None                   # perfect: kept whole
    # weights: rows with weight 0 do not count
    weight = np.r_[np.ones(250), np.zeros(250)]
    assert shrinkage.choose(half, truth, 0.0, weight) == pytest.approx(
        shrinkage.choose(half[:250], truth[:250], 0.0))


def test_same_seed_same_factors():
    X, y = frame()
    for family in ("forest", "gbm", "linear"):
        assert make(family, "auto").fit(X, y).shrinkage_ == make(family, "auto").fit(X, y).shrinkage_


def test_a_missing_label_is_never_a_held_out_row():
    X, y = frame()
    y.loc[::3, "noise"] = np.nan      # labels missing unevenly: one model per output
    model = make("forest", "auto").fit(X, y)
    assert "noise" in model.shrinkage_
    assert np.isfinite(model.predict(X)["noise"]).all()


@pytest.mark.parametrize("family", ["forest", "gbm", "linear"])
def test_the_factors_travel_in_the_model_file(family, tmp_path, capsys):
    X, y = frame()
    model = make(family, "auto").fit(X, y)
    model.save(tmp_path / "m")
    again = polyhead.load(tmp_path / "m")
    assert again.shrinkage_ == model.shrinkage_
    pd.testing.assert_frame_equal(again.predict(X), model.predict(X))
    code, out, _ = cli(capsys, "info", tmp_path / "m")
    assert code == 0 and "Shrinkage" in out and "noise (factor" in out


@pytest.mark.parametrize("bad", [[1.5, 0.0], [-0.1, 0.0], [0.5, float("nan")], "x"])
def test_a_tampered_factor_is_refused(tmp_path, bad):
    X, y = frame()
    make("linear", "auto").fit(X, y).save(tmp_path / "m")
    path = tmp_path / "m" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["shrinkage"]["noise"] = bad
    path.write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="shrinkage|NaN"):
        polyhead.load(tmp_path / "m")


def test_a_class_output_is_never_shrunk(tmp_path):
    X, y = frame()
    y["flag"] = (y["noise"] > 5).astype(int)          # binary, unpredictable
    model = make("forest", "auto").fit(X, y)
    assert "flag" not in model.shrinkage_
    model.save(tmp_path / "m")
    path = tmp_path / "m" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["shrinkage"]["flag"] = [0.5, 0.0]
    path.write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="shrinkage"):
        polyhead.load(tmp_path / "m")


def test_onnx_export_shrinks_as_predict_does(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("skl2onnx")
    import onnxruntime as ort

    from polyhead.io.onnx import feeds

    X, y = frame()
    for family in ("forest", "linear"):
        model = make(family, "auto").fit(X, y)
        assert model.shrinkage_
        path = model.to_onnx(tmp_path / f"{family}.onnx")
        session = ort.InferenceSession(str(path))
        names = [o.name for o in session.get_outputs()]
        got = dict(zip(names, session.run(None, feeds(X, model.features_.columns_)), strict=True))
        pred = model.predict(X)
        for name in ("signal", "noise"):
            np.testing.assert_allclose(got[name].ravel(), pred[name], rtol=1e-4, atol=1e-4)
