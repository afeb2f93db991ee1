import numpy as np
import pandas as pd
import pytest
from conftest import FAST, MIXED_TASKS, make_mixed
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

import polyhead
from polyhead import MultiTaskNet, NotFittedError, PolyheadError, Task, TaskError
from polyhead.nn.weighting import Uncertainty


def net(**kw):
    return MultiTaskNet(**{**FAST, **kw})


def test_frame_in_named_frame_out(mixed):
    X, y = mixed
    model = net(tasks=MIXED_TASKS).fit(X, y)
    X_te = X.iloc[:20].set_axis(range(100, 120))
    pred = model.predict(X_te)
    assert list(pred.columns) == ["amount", "kind", "level"]
    assert pred.index.equals(X_te.index)
    assert set(pred["kind"]) <= {"yes", "no"}            # strings come back as strings
    assert pred["level"].dtype.kind == "i"
    proba = model.predict_proba(X_te)
    assert set(proba) == {"kind", "level"}
    assert list(proba["level"].columns) == [0, 1, 2]
    np.testing.assert_allclose(proba["level"].sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_allclose(proba["kind"].sum(axis=1), 1, rtol=1e-6)
    # predictions and probabilities agree
    assert (proba["level"].idxmax(axis=1) == pred["level"]).all()


def test_learns_something_on_every_kind(mixed):
    X, y = mixed
    tasks = {**MIXED_TASKS, "tags": Task("tags", kind="multilabel", columns=["t1", "t2", "t3"])}
    model = net(tasks=tasks, max_epochs=60, hidden=(32,)).fit(X, y)
    table = model.evaluate(X, y)
    assert list(table.index) == ["amount", "kind", "level", "tags"]
    assert table.loc["amount", "r2"] > 0.8
    assert table.loc["kind", "accuracy"] > 0.85
    assert table.loc["level", "accuracy"] > 0.8
    assert table.loc["tags", "subset_accuracy"] > 0.6
    pred = model.predict(X)
    assert {"t1", "t2", "t3"} <= set(pred.columns) and set(np.unique(pred["t1"])) <= {0, 1}
    assert model.classes_["tags"].tolist() == ["t1", "t2", "t3"]
    assert 0 < model.score(X, y) <= 1


def test_missing_labels_are_masked_not_imputed():
    X, y = make_mixed(n=400, missing=0.4)
    model = net(tasks=MIXED_TASKS, max_epochs=40, hidden=(32,)).fit(X, y)
    table = model.evaluate(X, y)
    for task in MIXED_TASKS:
        assert table.loc[task, "n"] == y[task].notna().sum()
    assert table.loc["amount", "r2"] > 0.7
    # a row with every label missing still gets predictions for every task
    assert model.predict(X.iloc[:1]).notna().all(axis=None)


def test_missing_labels_do_not_change_the_loss():
    """Rows without a label for a task contribute exactly nothing to its loss."""
    import torch

    X, y = make_mixed(n=50)
    model = net(tasks={"amount": "regression"}, max_epochs=1).fit(X, y)
    enc = model.features_.transform(X)
    x = torch.from_numpy(enc)
    z, mask = model.task_states_[0].encode(y)
    full = model.compute_loss(model.module_(x), {"amount": (torch.from_numpy(z), torch.from_numpy(mask))})
    z2 = z.copy()
    z2[:10] = 1e6                                # garbage where the label is missing
    mask2 = mask.copy()
    mask2[:10] = False
    part = model.compute_loss(model.module_(x), {"amount": (torch.from_numpy(z2), torch.from_numpy(mask2))})
    sub = model.compute_loss(model.module_(x[10:]),
                             {"amount": (torch.from_numpy(z[10:]), torch.from_numpy(mask[10:]))})
    assert torch.allclose(part, sub)
    assert not torch.allclose(full, part)


def test_numpy_in_numpy_out(mixed):
    X, y = mixed
    Xa = X[["a", "b"]].to_numpy()
    one = net().fit(Xa, y["amount"].to_numpy())
    assert one.predict(Xa).shape == (len(Xa),) and not hasattr(one, "feature_names_in_")
    assert one.tasks_["y"].kind == "regression"
    two = net(tasks={"amount": "regression", "kind": "binary"}).fit(Xa, y[["amount", "t1"]].to_numpy())
    out = two.predict(Xa)
    assert out.shape == (len(Xa), 2)
    assert list(two.tasks_) == ["amount", "kind"]        # positional names from tasks
    clf = net().fit(Xa, y["kind"].to_numpy())
    assert clf.predict_proba(Xa).shape == (len(Xa), 2)    # single task, 1-D y: like sklearn


def test_series_in_series_out(mixed):
    X, y = mixed
    model = net().fit(X, y["kind"])
    pred = model.predict(X)
    assert isinstance(pred, pd.Series) and pred.name == "kind"
    assert isinstance(model.predict_proba(X)["kind"], pd.DataFrame)


def test_no_predict_proba_without_a_class_task(mixed):
    X, y = mixed
    model = net(tasks={"amount": "regression"}).fit(X, y)
    assert not hasattr(model, "predict_proba")


def test_same_seed_bit_identical(mixed):
    X, y = mixed
    a = net(tasks=MIXED_TASKS, dropout=0.1).fit(X, y)
    b = net(tasks=MIXED_TASKS, dropout=0.1).fit(X, y)
    pd.testing.assert_frame_equal(a.predict(X), b.predict(X))
    np.testing.assert_array_equal(a.predict_proba(X)["level"], b.predict_proba(X)["level"])
    assert a.history_ == [dict(r, seconds=ra["seconds"]) for r, ra in zip(b.history_, a.history_, strict=True)]
    c = net(tasks=MIXED_TASKS, random_state=1).fit(X, y)
    assert not np.array_equal(a.predict(X)["amount"], c.predict(X)["amount"])


def test_fit_does_not_touch_global_rng(mixed):
    import torch

    X, y = mixed
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    net(tasks=MIXED_TASKS).fit(X, y)
    assert torch.equal(torch.rand(3), expected)


def test_history_is_plain_data_per_task(mixed):
    import json

    X, y = mixed
    model = net(tasks=MIXED_TASKS, max_epochs=5, early_stopping=False).fit(X, y)
    assert model.n_iter_ == 5 and len(model.history_) == 5
    rec = model.history_[0]
    assert set(rec["train"]) == set(rec["valid"]) == set(MIXED_TASKS)
    json.dumps(model.history_)


def test_early_stopping_restores_best_weights(mixed):
    X, y = mixed
    model = net(tasks=MIXED_TASKS, max_epochs=300, patience=3, lr=0.05).fit(X, y)
    assert model.n_iter_ < 300
    best = min(r["valid_loss"] for r in model.history_)
    assert model.history_[model.best_epoch_ - 1]["valid_loss"] == best
    assert model.n_iter_ - model.best_epoch_ == 3


def test_uncertainty_weighting_learns_weights(mixed):
    X, y = mixed
    model = net(tasks=MIXED_TASKS, weighting="uncertainty", max_epochs=30).fit(X, y)
    first, last = model.history_[0]["task_weights"], model.history_[-1]["task_weights"]
    assert first != last
    inst = Uncertainty(init_log_var=0.5)
    m2 = net(tasks=MIXED_TASKS, weighting=inst).fit(X, y)
    assert not hasattr(inst, "log_vars")                 # the user's instance is not mutated
    assert clone(m2).get_params()["weighting"].init_log_var == 0.5


def test_task_weight_zero_ignores_the_task(mixed):
    X, y = mixed
    tasks = [Task("amount", kind="regression", weight=0.0), Task("kind", kind="binary")]
    model = net(tasks=tasks, max_epochs=10).fit(X, y)
    assert model.history_[-1]["task_weights"]["amount"] == 0.0


def test_regression_in_original_units(mixed):
    X, y = mixed
    model = net(tasks={"amount": "regression"}, max_epochs=60).fit(X, y)
    pred = model.predict(X)["amount"]
    assert abs(pred.mean() - y["amount"].mean()) < 1.0


def test_verbose_prints_epochs(mixed, capsys):
    X, y = mixed
    net(tasks=MIXED_TASKS, max_epochs=2, verbose=1).fit(X, y)
    err = capsys.readouterr().err
    assert "epoch    1" in err and "level" in err


def test_clone_pipeline_and_grid_search(mixed):
    X, y = mixed
    model = net(tasks=MIXED_TASKS)
    assert clone(model).get_params() == model.get_params()
    pipe = Pipeline([("id", FunctionTransformer()), ("net", model)]).fit(X, y)
    assert list(pipe.predict(X).columns) == list(MIXED_TASKS)
    grid = GridSearchCV(net(tasks=MIXED_TASKS), {"hidden": [(8,), (16,)]},
                        cv=KFold(2, shuffle=True, random_state=0)).fit(X, y)
    assert grid.best_params_["hidden"] in [(8,), (16,)]


@pytest.mark.parametrize("kw, message", [
    ({"hidden": (0,)}, "parameter hidden=\\(0,\\) is invalid"),
    ({"weighting": "magic"}, "parameter weighting='magic' is invalid"),
    ({"lr": -1.0}, "parameter lr=-1.0"),
    ({"validation_fraction": 1.0}, "validation_fraction=1.0"),
])
def test_bad_parameters_checked_in_fit(mixed, kw, message):
    X, y = mixed
    model = net(tasks=MIXED_TASKS, **kw)         # the constructor accepts anything
    with pytest.raises(PolyheadError, match=message):
        model.fit(X, y)


def test_bad_input_errors(mixed):
    X, y = mixed
    with pytest.raises(PolyheadError, match="X has 300 rows but y has 299"):
        net().fit(X, y.iloc[:-1])
    with pytest.raises(TaskError, match="unknown kind 'regresion'"):
        net(tasks={"amount": "regresion"}).fit(X, y)
    with pytest.raises(TaskError, match="task 'age' reads column 'age'"):
        net(tasks={"age": "regression"}).fit(X, y)
    bad = y.assign(amount=y["amount"].astype(object))
    bad.loc[7, "amount"] = "n/a"
    with pytest.raises(TaskError, match=r"task 'amount'.*'n/a' at row 7"):
        net(tasks={"amount": "regression"}).fit(X, bad)
    with pytest.raises(TaskError, match="only one class"):
        net(tasks={"kind": "multiclass"}).fit(X, y.assign(kind="yes"))
    with pytest.raises(PolyheadError, match=r"'a' has an infinite value \(inf\) at row 3"):
        net().fit(X.assign(a=X["a"].where(X.index != 3, np.inf)), y["amount"])
    with pytest.raises(TaskError, match="task 'kind' has no labels"):
        net(tasks={"kind": "binary"}).fit(X, y.assign(kind=None))


def test_predict_errors(mixed):
    X, y = mixed
    with pytest.raises(NotFittedError):
        net().predict(X)
    model = net(tasks=MIXED_TASKS).fit(X, y)
    with pytest.raises(PolyheadError, match="missing feature column 'colour'"):
        model.predict(X.drop(columns="colour"))
    with pytest.raises(PolyheadError, match="'b' has an infinite value"):
        model.predict(X.assign(b=np.inf))
    # extra columns (an id, the targets) are ignored; order does not matter
    pd.testing.assert_frame_equal(model.predict(X[["colour", "b", "a"]].assign(id=1)), model.predict(X))


def test_unseen_class_at_evaluation(mixed):
    X, y = mixed
    model = net(tasks={"level": "multiclass"}).fit(X, y)
    y_te = y.copy()
    y_te.loc[:9, "level"] = 29                   # a class that only occurs in the test set
    table = model.evaluate(X, y_te)
    assert table.loc["level", "n"] == len(y_te)
    assert np.isfinite(table.loc["level", "log_loss"])


def test_unseen_category_in_features(mixed):
    X, y = mixed
    model = net(tasks=MIXED_TASKS).fit(X, y)
    out = model.predict(X.assign(colour="purple"))
    assert out["amount"].notna().all()


def test_tiny_data_trains_without_validation():
    X = np.array([[0.0], [1.0]])
    model = net(validation_fraction=0.1).fit(X, [0.0, 1.0])
    assert model.history_[0]["valid_loss"] is None
    assert model.predict(X).shape == (2,)


def test_tasks_repr_shows_inferred_kinds(mixed):
    X, y = mixed
    model = net().fit(X, y[["amount", "kind", "level"]])
    assert {n: t.kind for n, t in model.tasks_.items()} == {
        "amount": "regression", "kind": "binary", "level": "regression"}
    assert "kind='binary'" in repr(model.tasks_["kind"])


def test_public_api_is_pinned():
    assert sorted(polyhead.__all__) == sorted([
        "Calibrated", "Comparison", "Conformal", "ModelFileError", "MultiTaskForest", "MultiTaskGBM", "MultiTaskLinear", "MultiTaskNet",
        "NotFittedError", "ParquetSource", "PolyheadError", "Separate", "SingleTarget", "Task", "TaskChain",
        "TaskError", "__version__", "compare", "datasets", "load"])
    for name in polyhead.__all__:
        assert getattr(polyhead, name) is not None


def test_packed_ensemble_members_and_spread(mixed, tmp_path):
    X, y = mixed
    model = net(tasks=MIXED_TASKS, n_ensemble=4, max_epochs=20).fit(X, y)
    members = model._member_outputs(X)
    assert members["amount"].shape == (4, len(X)) and members["level"].shape == (4, len(X), 3)
    assert members["amount"].std(axis=0).mean() > 0          # members differ: own init/shuffle
    proba = model.predict_proba(X)["level"].to_numpy()
    np.testing.assert_allclose(proba, members["level"].mean(axis=0))   # probabilities averaged
    pred, std = model.predict(X, return_std=True)
    pd.testing.assert_frame_equal(pred, model.predict(X))
    assert list(std.columns) == ["amount"] and (std["amount"] > 0).all()
    model.save(tmp_path / "m")
    again = polyhead.load(tmp_path / "m")
    pd.testing.assert_frame_equal(again.predict(X), model.predict(X))
    single = net(tasks={"amount": "regression"}, n_ensemble=1).fit(X, y)
    assert (single.predict(X, return_std=True)[1]["amount"] == 0).all()


def test_packed_members_train_independently():
    """Each member of a packed ensemble learns exactly what it would learn alone."""
    import torch

    from polyhead.nn.layers import PackedLinear

    layer = PackedLinear(3, 4, 2)
    x = torch.randn(3, 5, 4)
    out = layer(x)
    for k in range(3):
        torch.testing.assert_close(out[k], x[k] @ layer.weight[k] + layer.bias[k])
    out[1].sum().backward()
    assert layer.weight.grad[0].abs().sum() == 0 and layer.weight.grad[2].abs().sum() == 0


def test_batch_norm_with_ensemble_is_refused(mixed):
    X, y = mixed
    with pytest.raises(PolyheadError, match="norm='batch' is not available with n_ensemble"):
        net(tasks=MIXED_TASKS, n_ensemble=2, norm="batch").fit(X, y)


def test_auto_batch_size_scales_with_rows(mixed):
    X, y = mixed
    small = net(tasks=MIXED_TASKS, batch_size="auto").fit(X, y)
    assert small.batch_size_ == 32
    assert net(batch_size="auto")._batch_size(2518) == 128
    assert net(batch_size="auto")._batch_size(10**6) == 256


def test_presets_fill_only_what_was_left_unset(mixed, tmp_path):
    """A preset sets n_ensemble, numeric, the embedding, best_epoch and patience where they are None; an explicit value
    always wins; get_params keeps what the user gave (scikit-learn's contract)."""
    from polyhead.models.presets import PRESETS
    from polyhead.nn.inputs import auto_bins

    X, y = mixed
    for preset, values in PRESETS.items():
        model = net(tasks=MIXED_TASKS, max_epochs=3, preset=preset).fit(X, y)
        assert model.n_ensemble_ == values["n_ensemble"] and model.numeric_ == values["numeric"]
        assert model._best_epoch_mode == values["best_epoch"]
        bins = auto_bins(len(X)) if values["n_bins"] == "auto" else values["n_bins"]
        assert model.n_bins_ == bins and model.patience_ == values["patience"]
        assert (model.embedding_scores_ != {}) == (values["numeric_embedding"] == "auto")
        assert model.get_params()["n_ensemble"] is None
        assert {c["transform"] for c in model.features_.columns_ if c["type"] == "numeric"} <= {
            values["numeric"], "standard"}
    chosen = net(tasks=MIXED_TASKS, max_epochs=3, preset="best", n_ensemble=2,
                 numeric="robust", patience=7).fit(X, y)
    assert chosen.n_ensemble_ == 2 and chosen.numeric_ == "robust" and chosen.patience_ == 7
    assert chosen.get_params()["patience"] == 7
    assert chosen._member_outputs(X)["amount"].shape[0] == 2
    chosen.save(tmp_path / "m")
    again = polyhead.load(tmp_path / "m")
    assert again.n_ensemble_ == 2 and again.numeric_ == "robust" and again.patience_ == 7
    pd.testing.assert_frame_equal(again.predict(X), chosen.predict(X))
    with pytest.raises(polyhead.PolyheadError, match="preset"):
        net(tasks=MIXED_TASKS, preset="fastest").fit(X, y)


def test_the_default_net_is_an_ensemble_and_is_deterministic(mixed):
    X, y = mixed
    a = polyhead.MultiTaskNet(tasks=MIXED_TASKS, max_epochs=4, random_state=3).fit(X, y)
    b = polyhead.MultiTaskNet(tasks=MIXED_TASKS, max_epochs=4, random_state=3).fit(X, y)
    assert a.n_ensemble_ > 1
    pd.testing.assert_frame_equal(a.predict(X), b.predict(X))


@pytest.mark.parametrize("n_ensemble", [1, 4])
def test_predictions_and_validation_losses_do_not_depend_on_the_chunk_size(monkeypatch, mixed, n_ensemble):
    # large batches are predicted and validated in chunks of rows (bounded memory)
    import torch

    import polyhead.models.net as net_module

    X, y = mixed
    model = MultiTaskNet(MIXED_TASKS, **{**FAST, "n_ensemble": n_ensemble}).fit(X, y)
    whole = model.predict_frame(X, proba=True)
    std = model.predict(X, return_std=True)[1]
    x = torch.from_numpy(model.features_.transform(X))
    targets = {t.name: tuple(None if a is None else torch.from_numpy(np.asarray(a))
                             for a in t.encode(y)) for t in model.task_states_}
    losses = model.evaluate_losses(x, targets)
    monkeypatch.setattr(net_module, "_PREDICT_CHUNK", 7 * n_ensemble)
    pd.testing.assert_frame_equal(model.predict_frame(X, proba=True), whole)
    pd.testing.assert_frame_equal(model.predict(X, return_std=True)[1], std)
    torch.testing.assert_close(model.evaluate_losses(x, targets), losses)
