"""The scripted epoch with a hand-written backward pass (polyhead.nn.fast_epoch): taken for plain
MLPs, the same training as autograd's, and autograd everywhere else."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import FAST, make_mixed

import polyhead
from polyhead.nn import fast_epoch

TASKS = {"amount": "regression", "kind": "binary", "level": "multiclass"}


def fit(monkeypatch: pytest.MonkeyPatch, enabled: bool, X: pd.DataFrame, y: pd.DataFrame, **kw):
    monkeypatch.setattr(fast_epoch, "ENABLED", enabled)
    taken = []
    original = fast_epoch.FastEpoch.__call__

    def spy(self, *a, **k):
        taken.append(1)
        return original(self, *a, **k)

    monkeypatch.setattr(fast_epoch.FastEpoch, "__call__", spy)
    tasks = kw.pop("tasks", TASKS)
    model = polyhead.MultiTaskNet(tasks, **{**FAST, "max_epochs": 8, **kw}).fit(X, y, **kw.pop("fit", {}))
    return model, len(taken)


@pytest.mark.parametrize("options", [
    {},
    {"weight_decay": 1e-3, "lr_schedule": "cosine", "batch_size": 50},
    {"hidden": (12, 8, 6), "validation_fraction": 0.0, "early_stopping": False},
    {"tasks": {"amount": polyhead.Task("amount", weight=3.0), "kind": "binary", "level": "multiclass"}},
    {"n_ensemble": 3},  # packed members, each its own shuffle
    {"n_ensemble": 4, "hidden": (8,), "weight_decay": 1e-3},
    {"tasks": {**TASKS, "tags": polyhead.Task("tags", kind="multilabel", columns=["t1", "t2", "t3"])}},
    {"tasks": {"tags": polyhead.Task("tags", kind="multilabel", columns=["t1", "t2", "t3"])}, "n_ensemble": 3},
    {"numeric_embedding": "ple", "n_bins": 4},  # piecewise-linear embeddings, one network
    {"numeric_embedding": "ple", "n_ensemble": 3, "weight_decay": 1e-3},  # shared by members
    {"numeric_embedding": "ple", "hidden": (), "n_bins": 6},  # straight into the heads
])
def test_the_scripted_epoch_trains_as_autograd_does(monkeypatch, options):
    X, y = make_mixed(400, missing=0.25)  # missing labels in every task
    tasks = options.get("tasks", TASKS)
    y = y[[c for name, t in tasks.items() for c in getattr(t, "columns", None) or [name]]]
    fast, n_fast = fit(monkeypatch, True, X, y, **dict(options))
    slow, n_slow = fit(monkeypatch, False, X, y, **dict(options))
    assert n_fast == fast.n_iter_ and n_slow == 0
    np.testing.assert_allclose(fast.predict_frame(X, proba=True).drop(columns=["kind"], errors="ignore").to_numpy(float),
                               slow.predict_frame(X, proba=True).drop(columns=["kind"], errors="ignore").to_numpy(float),
                               rtol=1e-4, atol=1e-5)
    for a, b in zip(fast.history_, slow.history_, strict=True):
        for name in a["train"]:
            assert a["train"][name] == pytest.approx(b["train"][name], rel=1e-4, abs=1e-6)
    assert all(p.grad is None for p in fast.module_.parameters())


def test_it_is_deterministic_and_survives_saving(monkeypatch, tmp_path):
    X, y = make_mixed(300)
    a, _ = fit(monkeypatch, True, X, y[list(TASKS)])
    b, _ = fit(monkeypatch, True, X, y[list(TASKS)])
    pd.testing.assert_frame_equal(a.predict_frame(X, proba=True), b.predict_frame(X, proba=True))
    a.save(tmp_path / "m")
    pd.testing.assert_frame_equal(polyhead.load(tmp_path / "m").predict_frame(X, proba=True),
                                  a.predict_frame(X, proba=True))


@pytest.mark.parametrize("options", [
    {"n_ensemble": 2, "ensemble": "batch"}, {"dropout": 0.1}, {"norm": "layer"}, {"activation": "gelu"},
    {"numeric_embedding": "periodic"}, {"numeric_embedding": "ple", "embed_above": 2},
    {"head_hidden": (8,)}, {"experts": 2}, {"weighting": "dwa"},
    {"tasks": {"amount": polyhead.Task("amount", loss="huber"), "kind": "binary"}},
    {"tasks": {"amount": "regression", "n": polyhead.Task("n", kind="count", column="level")}},
])
def test_everything_else_trains_through_autograd(monkeypatch, options):
    X, y = make_mixed(200)
    model, n_fast = fit(monkeypatch, True, X, y, **{"max_epochs": 2, **options})
    assert n_fast == 0 and model.n_iter_ == 2


@pytest.mark.parametrize("enabled", [True, False])
@pytest.mark.parametrize("n_ensemble", [1, 3])
def test_large_inputs_gather_each_batch_and_train_the_same(monkeypatch, enabled, n_ensemble):
    # above GATHER_LIMIT an epoch indexes each batch's rows instead of copying x K times
    X, y = make_mixed(300, missing=0.2)
    y = y[list(TASKS)]
    whole, _ = fit(monkeypatch, enabled, X, y, n_ensemble=n_ensemble)
    monkeypatch.setattr(fast_epoch, "GATHER_LIMIT", 0)
    batched, _ = fit(monkeypatch, enabled, X, y, n_ensemble=n_ensemble)
    pd.testing.assert_frame_equal(whole.predict_frame(X, proba=True), batched.predict_frame(X, proba=True))
