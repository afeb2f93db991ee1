"""scikit-learn sub-models are stored as arrays: exact round trips, hostile files refused, no
pickle-family file in any model directory, and old skops directories upgraded (issue 14)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import zipfile

import numpy as np
import pandas as pd
import pytest
import safetensors.numpy
from conftest import FAST, cli, make_mixed
from sklearn import ensemble, linear_model, tree

import polyhead
from polyhead import ModelFileError, PolyheadError
from polyhead.io import sklearn_arrays
from polyhead.persistence import MANIFEST

RNG = np.random.default_rng(0)
X = RNG.normal(size=(150, 4))
X[::7, 1] = np.nan
XF = np.nan_to_num(X)
Y_NUM = 2 * XF[:, 0] + RNG.normal(size=150)
Y_BIN = (XF[:, 0] > 0).astype(int)
Y_MULTI = RNG.integers(0, 3, 150)
Y_COUNT = RNG.poisson(2, 150)

CASES = [
    (linear_model.LinearRegression(), XF, Y_NUM),
    (linear_model.Ridge(), XF, Y_NUM),
    (linear_model.ElasticNet(alpha=0.1), XF, Y_NUM),
    (linear_model.MultiTaskElasticNet(alpha=0.1), XF, np.c_[Y_NUM, -Y_NUM]),
    (linear_model.LogisticRegression(), XF, Y_MULTI),
    (linear_model.LogisticRegression(), XF, Y_BIN),
    (linear_model.PoissonRegressor(), XF, Y_COUNT),
    (linear_model.QuantileRegressor(quantile=0.8, alpha=0.01), XF, Y_NUM),
    (linear_model.HuberRegressor(), XF, Y_NUM),
    (tree.DecisionTreeRegressor(max_depth=4), X, Y_NUM),
    (tree.DecisionTreeClassifier(max_leaf_nodes=9), X, Y_MULTI),
    (ensemble.RandomForestRegressor(n_estimators=4, random_state=0), X, np.c_[Y_NUM, Y_COUNT]),
    (ensemble.RandomForestClassifier(n_estimators=4, random_state=0), X, np.c_[Y_BIN, Y_MULTI]),
    (ensemble.ExtraTreesClassifier(n_estimators=4, random_state=0), XF, Y_MULTI),
    (ensemble.RandomForestRegressor(n_estimators=4, criterion="poisson", random_state=0), X, Y_COUNT),
    (ensemble.HistGradientBoostingRegressor(max_iter=15), X, Y_NUM),
    (ensemble.HistGradientBoostingRegressor(max_iter=15, loss="poisson"), X, Y_COUNT),
    (ensemble.HistGradientBoostingRegressor(max_iter=15, loss="quantile", quantile=0.9), X, Y_NUM),
    (ensemble.HistGradientBoostingClassifier(max_iter=15), X, Y_BIN),
    (ensemble.HistGradientBoostingClassifier(max_iter=15), X, Y_MULTI),
]


def _same(a, b) -> bool:
    if isinstance(a, list):
        return all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    return bool(np.array_equal(a, b))


@pytest.mark.parametrize("model, data, y", CASES, ids=[type(c[0]).__name__ for c in CASES])
def test_every_supported_model_round_trips_exactly(model, data, y):
    model.fit(data, y)
    again = sklearn_arrays.loads(sklearn_arrays.dumps(model))
    assert type(again) is type(model)
    for method in ("predict", "predict_proba"):
        if hasattr(model, method):
            assert _same(getattr(model, method)(data), getattr(again, method)(data)), method


def test_an_unsupported_model_is_refused_at_save_in_one_line(tmp_path):
    from sklearn.neighbors import KNeighborsRegressor

    Xd, y = make_mixed(60)
    model = polyhead.SingleTarget(KNeighborsRegressor(), tasks={"amount": "regression"})
    model.fit(Xd, y[["amount"]])
    with pytest.raises(PolyheadError, match="KNeighborsRegressor cannot be saved"):
        model.save(tmp_path / "m")
    assert not (tmp_path / "m").exists()


def _forest_bytes() -> tuple[dict, dict]:
    from safetensors.numpy import load

    model = ensemble.RandomForestRegressor(n_estimators=2, random_state=0).fit(XF, Y_NUM)
    data = sklearn_arrays.dumps(model)
    header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
    return json.loads(header["__metadata__"]["polyhead_sklearn"]), load(data)


@pytest.mark.parametrize("damage, match", [
    (lambda m, a: a["nodes.left_child"].__setitem__(0, 0), "children or features"),  # a cycle
    (lambda m, a: a["nodes.right_child"].__setitem__(0, 10**9), "children or features"),
    (lambda m, a: a["nodes.feature"].__setitem__(0, 99), "children or features"),
    (lambda m, a: m.update(type="KNeighborsRegressor"), "unknown type"),
    (lambda m, a: m.update(type="os.system"), "unknown type"),
    (lambda m, a: m["params"].update(exec="print(1)"), "unknown parameters"),
    (lambda m, a: m["params"].update(n_estimators="many"), "invalid parameters"),
    (lambda m, a: m.update(node_counts=[1, 1]), "node counts"),
    (lambda m, a: m["attributes"].update({"__class__": {"value": 1}}), "invalid attribute"),
    (lambda m, a: a.pop("values"), "malformed"),
])
def test_a_damaged_unit_is_a_model_file_error_not_a_crash(damage, match):
    from safetensors.numpy import save

    meta, arrays = _forest_bytes()
    arrays = {k: v.copy() for k, v in arrays.items()}
    damage(meta, arrays)
    data = save(arrays, metadata={"polyhead_sklearn": json.dumps(meta)})
    with pytest.raises(ModelFileError, match=match):
        sklearn_arrays.loads(data)


#: JSON, safetensors, LightGBM's text format, XGBoost's UBJSON: never pickle, joblib or skops
OURS = (".json", ".safetensors", ".lightgbm", ".xgboost", ".constant")


def _fitted_models():
    Xd, y = make_mixed(120, missing=0.1)
    tasks = {"amount": "regression", "kind": "binary", "level": "multiclass"}
    models = {
        "forest": polyhead.MultiTaskForest(tasks, n_estimators=5, random_state=0),
        "gbm": polyhead.MultiTaskGBM(tasks, n_estimators=10, random_state=0),
        "linear": polyhead.MultiTaskLinear(tasks),
        "net": polyhead.MultiTaskNet(tasks, **FAST),
        "single": polyhead.SingleTarget({"regression": linear_model.Ridge(),
                                         "classification": ensemble.RandomForestClassifier(5)}, tasks),
        "chain": polyhead.TaskChain(polyhead.MultiTaskLinear(), tasks, cv=2, random_state=0),
        "separate": polyhead.Separate(polyhead.MultiTaskGBM(n_estimators=5), tasks),
        "conformal": polyhead.Conformal(polyhead.MultiTaskForest(tasks, n_estimators=5),
                                        normalize="residual", random_state=0),
    }
    for backend in ("lightgbm", "xgboost"):
        if importlib.util.find_spec(backend):
            models[backend] = polyhead.MultiTaskGBM(tasks, backend=backend, n_estimators=5)
    return Xd, y, models


def test_no_model_directory_holds_a_pickle_family_file(tmp_path):
    Xd, y, models = _fitted_models()
    for name, model in models.items():
        model.fit(Xd, y)
        path = tmp_path / name
        model.save(path)
        again = polyhead.load(path)
        pd.testing.assert_frame_equal(again.predict(Xd), model.predict(Xd))
        for file in path.rglob("*"):
            assert file.suffix in OURS, f"{file}: not one of polyhead's formats"
            if file.suffix == ".safetensors":
                safetensors.numpy.load(file.read_bytes())  # parses: tensors and a JSON header
            elif file.suffix == ".json":
                json.loads(file.read_text())
            assert not zipfile.is_zipfile(file), f"{file} is a zip archive (skops, joblib, torch)"


def _as_old_skops_directory(path):
    """Rewrite a saved forest as polyhead format 2 wrote it: units as skops files."""
    sio = pytest.importorskip("skops.io")
    manifest = json.loads((path / MANIFEST).read_text())
    model = polyhead.load(path)
    for i, unit in enumerate(manifest["units"]):
        (path / unit["file"]).unlink()
        del manifest["files_sha256"][unit["file"]]
        data = sio.dumps(model.units_[i][1])
        unit.update(file=f"unit{i}.skops", format="skops")
        (path / unit["file"]).write_bytes(data)
        manifest["files_sha256"][unit["file"]] = hashlib.sha256(data).hexdigest()
    manifest["format_version"] = 2
    (path / MANIFEST).write_text(json.dumps(manifest))


def test_an_old_skops_model_is_refused_in_one_line_and_upgrades(tmp_path, capsys):
    Xd, y = make_mixed(80)
    model = polyhead.MultiTaskForest({"amount": "regression", "kind": "binary"}, n_estimators=4,
                                     random_state=0).fit(Xd, y)
    old = tmp_path / "old"
    model.save(old)
    _as_old_skops_directory(old)
    with pytest.raises(ModelFileError, match="polyhead upgrade"):
        polyhead.load(old)

    Xd.assign(**y).to_csv(tmp_path / "rows.csv", index=False)
    code, _, err = cli(capsys, "predict", old, tmp_path / "rows.csv", "-o", tmp_path / "p.csv")
    assert code == 2 and "polyhead upgrade" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli(capsys, "upgrade", old, "-o", old, "--force")
    assert code == 2 and "is the input" in err  # never over its own input
    code, _, err = cli(capsys, "upgrade", old, "-o", tmp_path / "new")
    assert code == 0, err
    new = polyhead.load(tmp_path / "new")
    pd.testing.assert_frame_equal(new.predict(Xd), model.predict(Xd))
    assert not list((tmp_path / "new").glob("*.skops"))
    assert json.loads((tmp_path / "new" / MANIFEST).read_text())["format_version"] >= 3


def test_an_upgrade_still_refuses_untrusted_types(tmp_path):
    sio = pytest.importorskip("skops.io")
    Xd, y = make_mixed(60)
    model = polyhead.MultiTaskForest({"amount": "regression"}, n_estimators=2).fit(Xd, y)
    old = tmp_path / "old"
    model.save(old)
    _as_old_skops_directory(old)
    manifest = json.loads((old / MANIFEST).read_text())
    data = sio.dumps({"f": shutil.rmtree})  # an archive that asks for a function
    (old / "unit0.skops").write_bytes(data)
    manifest["files_sha256"]["unit0.skops"] = hashlib.sha256(data).hexdigest()
    (old / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="untrusted"):
        polyhead.io.legacy.upgrade(old, tmp_path / "new")
    assert not (tmp_path / "new").exists()
