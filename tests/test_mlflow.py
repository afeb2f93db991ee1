"""The MLflow flavour against a local file store: polyhead's own directory inside, no pickle,
and ``mlflow.pyfunc.load_model(...).predict`` gives the model's DataFrame (issue 14)."""

from __future__ import annotations

import warnings
import zipfile

import pandas as pd
import pytest
from conftest import FAST, MIXED_TASKS, make_mixed

import polyhead

pytest.importorskip("mlflow")

import mlflow
import mlflow.pyfunc

import polyhead.mlflow


def test_log_load_and_pyfunc_predict(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri(f"file:{tmp_path / 'mlruns'}")
    X, y = make_mixed(80)
    model = polyhead.MultiTaskNet(tasks=MIXED_TASKS, **FAST).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mlflow.start_run():
            info = polyhead.mlflow.log_model(model, name="model")
        again = polyhead.mlflow.load_model(info.model_uri)
        served = mlflow.pyfunc.load_model(info.model_uri)
    pd.testing.assert_frame_equal(again.predict(X), model.predict(X))
    pd.testing.assert_frame_equal(served.predict(X), model.predict_frame(X))
    files = [p for p in (tmp_path / "mlruns").rglob("*") if p.is_file()]
    assert any(p.name == "weights.safetensors" for p in files)
    for p in files:
        assert p.suffix not in (".pkl", ".pickle", ".joblib", ".skops", ".cloudpickle"), p
        assert not zipfile.is_zipfile(p), p
    mlmodel = next(p for p in files if p.name == "MLmodel").read_text()
    assert "polyhead" in mlmodel and "loader_module: polyhead.mlflow" in mlmodel


def test_a_forest_logs_too(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri(f"file:{tmp_path / 'mlruns'}")
    X, y = make_mixed(60)
    forest = polyhead.MultiTaskForest(tasks=MIXED_TASKS, n_estimators=5, random_state=0).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mlflow.start_run():
            info = polyhead.mlflow.log_model(forest)
        again = polyhead.mlflow.load_model(info.model_uri)
    pd.testing.assert_frame_equal(again.predict(X), forest.predict(X))
