"""Exact-twin recall (``MultiTaskNet(twins="auto")``, polyhead/models/twins.py)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import FAST, cli, make_mixed

import polyhead
from polyhead import MultiTaskNet, Task
from polyhead.models import twins

TASKS = [Task("amount", kind="regression"), Task("kind", kind="binary"),
         Task("level", kind="multiclass"), Task("tags", kind="multilabel", columns=["t1", "t2", "t3"])]
TWINS = {**FAST, "twins": "auto", "max_epochs": 20}


def repeated(n_items: int = 150, copies: int = 4, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Items listed ``copies`` times each, with labels drawn at random per item: the features
    say nothing a network can learn, but a row's twins know its labels."""
    rng = np.random.default_rng(seed)
    items = pd.DataFrame({"a": rng.normal(size=n_items), "b": rng.normal(size=n_items),
                          "shop": rng.choice(["x", "y", "z"], n_items)})
    labels = pd.DataFrame({"amount": rng.normal(size=n_items) * 5,
                           "kind": rng.choice(["yes", "no"], n_items),
                           "level": rng.integers(0, 3, n_items),
                           "t1": rng.integers(0, 2, n_items), "t2": rng.integers(0, 2, n_items),
                           "t3": rng.integers(0, 2, n_items)})
    order = rng.permutation(np.repeat(np.arange(n_items), copies))
    return (items.iloc[order].reset_index(drop=True), labels.iloc[order].reset_index(drop=True))


def test_twins_recall_the_labels_of_repeated_rows_for_every_kind():
    X, y = repeated()
    recall = MultiTaskNet(tasks=TASKS, **TWINS).fit(X, y)
    plain = MultiTaskNet(tasks=TASKS, **{**TWINS, "twins": "none"}).fit(X, y)
    assert plain.twins_ is None
    assert set(recall.twins_.alphas) == {t.name for t in TASKS}
    first = ~X.duplicated()
    Xs, ys = X[first], y[first]
    pred, base = recall.predict(Xs), plain.predict(Xs)
    error = float(np.abs(pred["amount"] - ys["amount"]).mean())
    assert error < 0.5 * float(np.abs(base["amount"] - ys["amount"]).mean())
    for column in ("kind", "level", "t1", "t2", "t3"):
        assert (pred[column] == ys[column]).mean() > (base[column] == ys[column]).mean() + 0.2
    proba = recall.predict_proba(Xs)["level"].to_numpy()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    # rows without a twin keep the network's outputs, untouched
    new = X.head(20).assign(a=X.a.head(20) + 1e-3)
    pd.testing.assert_frame_equal(recall.predict(new), _without_twins(recall).predict(new))


def _without_twins(model: MultiTaskNet) -> MultiTaskNet:
    import copy

    clone = copy.copy(model)
    clone.twins_ = None
    return clone


def test_no_repeated_rows_no_table_and_nothing_in_the_file(tmp_path):
    X, y = make_mixed(300)
    model = MultiTaskNet(tasks={"amount": "regression", "kind": "binary"}, **TWINS).fit(
        X, y[["amount", "kind"]])
    assert model.twins_ is None
    model.save(tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert "twins" not in manifest and manifest["params"]["twins"] == "auto"


def test_only_the_default_and_best_presets_recall():
    from polyhead.models.presets import PRESETS

    assert {p: v["twins"] for p, v in PRESETS.items()} == {
        "fast": "none", "balanced": "none", "default": "auto", "best": "auto"}
    X, y = repeated(60, 4)
    assert MultiTaskNet(tasks=TASKS, **FAST).fit(X, y).twins_ is None  # fast: none


def test_a_table_round_trips_through_the_model_file_and_a_bad_one_is_refused(tmp_path, capsys):
    X, y = repeated()
    model = MultiTaskNet(tasks=TASKS, **TWINS).fit(X, y)
    model.save(tmp_path / "m")
    loaded = polyhead.load(tmp_path / "m")
    assert loaded.twins_.alphas == model.twins_.alphas
    pd.testing.assert_frame_equal(loaded.predict(X), model.predict(X))
    path = tmp_path / "m" / "manifest.json"
    manifest = json.loads(path.read_text())
    code, out, _ = cli(capsys, "info", tmp_path / "m")
    assert code == 0 and "Twins" in out and "amount (alpha" in out
    assert cli(capsys, "info", tmp_path / "m", "--json")[1].count('"alphas"') == 1
    manifest["twins"]["alphas"]["amount"] = 2.0
    path.write_text(json.dumps(manifest))
    with pytest.raises(polyhead.ModelFileError, match="alpha"):
        polyhead.load(tmp_path / "m")


def test_members_are_blended_each_so_a_full_recall_has_no_spread():
    X, y = repeated()
    model = MultiTaskNet(tasks={"amount": "regression"}, **{**TWINS, "n_ensemble": 3}).fit(
        X, y[["amount"]])
    assert model.twins_.alphas == {"amount": 1.0}
    pred, std = model.predict(X.head(30), return_std=True)
    np.testing.assert_allclose(std.to_numpy(), 0.0, atol=1e-9)
    np.testing.assert_allclose(pred["amount"], y["amount"].head(30), atol=1e-6)  # every row here is a twin


def test_a_recalling_network_is_not_exported(tmp_path):
    pytest.importorskip("onnx")
    X, y = repeated()
    model = MultiTaskNet(tasks={"amount": "regression"}, **TWINS).fit(X, y[["amount"]])
    with pytest.raises(polyhead.PolyheadError, match="twins='none'"):
        model.to_onnx(tmp_path / "m.onnx")


def test_quantile_tasks_never_recall_and_missing_labels_are_not_twins():
    X, y = repeated()
    y = y.assign(amount=y.amount.where(np.arange(len(y)) % 3 != 0))
    tasks = [Task("amount", kind="regression"), Task("band", kind="quantile", quantiles=(0.1, 0.9))]
    model = MultiTaskNet(tasks=tasks, **TWINS).fit(X, y[["amount"]].assign(band=y.amount.fillna(0)))
    assert model.twins_.alphas == {"amount": 1.0}                       # the band never recalls
    table = model.twins_
    labelled = y.amount.notna()
    # the table counts labelled rows only: a key's count is its labelled copies
    keys = twins.row_keys(model.features_.transform(model._check_X(X, fit=False)))
    position = np.searchsorted(table.keys, keys)
    counts = pd.Series(labelled.to_numpy()).groupby(keys).sum()
    np.testing.assert_array_equal(table.counts["amount"][position], counts.loc[keys].to_numpy())


def test_mix_keeps_outputs_where_no_twin_is_known():
    out = np.array([[1.0, 2.0], [3.0, 4.0]])
    twin = np.array([[0.0, np.nan], [np.nan, np.nan]])
    np.testing.assert_allclose(twins.mix(out, twin, 0.5), [[0.5, 2.0], [3.0, 4.0]])
    keys = twins.row_keys(np.array([[0.0, 1.0], [-0.0, 1.0], [0.0, 2.0]], dtype=np.float32))
    assert keys[0] == keys[1] != keys[2]                                # -0.0 is 0.0
    rows = np.random.default_rng(0).normal(size=(1000, 3)).astype(np.float32)
    np.testing.assert_array_equal(twins.row_keys(rows, chunk=64), twins.row_keys(rows))  # chunks


def test_separate_nets_each_keep_their_own_table_through_the_file(tmp_path):
    X, y = repeated()
    tasks = [Task("amount", kind="regression"), Task("kind", kind="binary")]
    model = polyhead.Separate(MultiTaskNet(tasks=tasks, **TWINS), random_state=0).fit(
        X, y[["amount", "kind"]])
    inner = model.estimators_.values() if isinstance(model.estimators_, dict) else model.estimators_
    assert [e.twins_.alphas for e in inner] == [{"amount": 1.0}, {"kind": 1.0}]
    model.save(tmp_path / "m")
    pd.testing.assert_frame_equal(polyhead.load(tmp_path / "m").predict(X), model.predict(X))
