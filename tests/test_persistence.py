import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import FAST, MIXED_TASKS

import polyhead
from polyhead import ModelFileError, MultiTaskNet, Task
from polyhead.io import OutputPathError
from polyhead.persistence import FORMAT_VERSION, MANIFEST, WEIGHTS


@pytest.fixture
def saved(tmp_path, mixed):
    X, y = mixed
    tasks = [*(Task(n, kind=k) for n, k in MIXED_TASKS.items()),
             Task("tags", kind="multilabel", columns=("t1", "t2", "t3"))]
    model = MultiTaskNet(tasks=tasks, weighting="uncertainty", norm="layer", **FAST).fit(X, y)
    path = tmp_path / "model"
    model.save(path)
    return model, path, X


def test_round_trip_identical_predictions(saved):
    model, path, X = saved
    again = polyhead.load(path)
    pd.testing.assert_frame_equal(again.predict(X), model.predict(X))
    for task, proba in model.predict_proba(X).items():
        pd.testing.assert_frame_equal(again.predict_proba(X)[task], proba)
    assert again.get_params() == model.get_params()
    assert again.history_ == json.loads(json.dumps(model.history_))
    assert again.tasks_ == model.tasks_


def test_directory_holds_only_json_and_safetensors(saved):
    _, path, _ = saved
    assert sorted(p.name for p in path.iterdir()) == [MANIFEST, WEIGHTS]
    manifest = json.loads((path / MANIFEST).read_text())
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["polyhead_version"] == polyhead.__version__
    assert manifest["architecture"]["heads"] == {"amount": 1, "kind": 1, "level": 3, "tags": 3}
    assert b"pickle" not in (path / WEIGHTS).read_bytes()[:200]


def test_numpy_and_series_formats_round_trip(tmp_path, mixed):
    X, y = mixed
    Xa = X[["a", "b"]].to_numpy()
    model = MultiTaskNet(**FAST).fit(Xa, y["kind"].to_numpy())
    model.save(tmp_path / "m")
    np.testing.assert_array_equal(polyhead.load(tmp_path / "m").predict(Xa), model.predict(Xa))


def test_save_refuses_to_overwrite(saved):
    model, path, X = saved
    with pytest.raises(OutputPathError, match="already exists; pass overwrite=True"):
        model.save(path)
    model.save(path, overwrite=True)
    assert polyhead.load(path).predict(X).shape == model.predict(X).shape
    assert not list(path.parent.glob(".model*"))      # no temp dirs left behind


def test_save_into_missing_folder(saved, tmp_path):
    model, _, _ = saved
    with pytest.raises(OutputPathError, match="does not exist"):
        model.save(tmp_path / "nope" / "model")


def test_save_unfitted():
    with pytest.raises(polyhead.NotFittedError):
        MultiTaskNet().save("x")


@pytest.mark.parametrize("damage, message", [
    (lambda p: (p / MANIFEST).write_text("{not json"), "is corrupted"),
    (lambda p: (p / MANIFEST).unlink(), "is not a polyhead model directory"),
    (lambda p: (p / WEIGHTS).unlink(), "weights.safetensors is missing"),
    (lambda p: (p / WEIGHTS).write_bytes((p / WEIGHTS).read_bytes()[:100]), "checksum differs"),
    (lambda p: _edit(p, format_version=FORMAT_VERSION + 1), "upgrade polyhead"),
    (lambda p: _edit(p, estimator="os.system"), "unknown estimator 'os.system'"),
    (lambda p: _edit(p, format="other"), "not a polyhead model manifest"),
    (lambda p: _edit(p, architecture={"in_features": 3}), "invalid architecture: in_features 3 differs"),
])
def test_damaged_model_gives_clear_error(saved, damage, message):
    _, path, _ = saved
    damage(path)
    with pytest.raises(ModelFileError, match=message):
        polyhead.load(path)


def test_weights_from_another_model_are_caught(saved, tmp_path, mixed):
    _, path, _ = saved
    X, y = mixed
    other = MultiTaskNet(tasks={"amount": "regression"}, **FAST).fit(X, y)
    other.save(tmp_path / "other")
    (path / WEIGHTS).write_bytes((tmp_path / "other" / WEIGHTS).read_bytes())
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["weights_sha256"] = json.loads((tmp_path / "other" / MANIFEST).read_text())["weights_sha256"]
    (path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="the weights do not match the architecture"):
        polyhead.load(path)


def test_missing_directory():
    with pytest.raises(ModelFileError, match="no such model directory"):
        polyhead.load(Path("/nonexistent/model"))


def _edit(path: Path, **changes):
    manifest = json.loads((path / MANIFEST).read_text())
    manifest.update(changes)
    (path / MANIFEST).write_text(json.dumps(manifest))
