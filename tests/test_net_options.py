"""The network's options: ensembles, embeddings, task layers, experts, per-task best epochs,
loss weighting strategies. Behaviour only (shapes, masking, seeds, files), never quality."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import FAST, MIXED_TASKS, make_mixed

import polyhead
from polyhead import MultiTaskNet
from polyhead.models.net import _beyond_noise, _embedding_wins
from polyhead.nn import BatchEnsembleLinear, InputBlock, MultiTaskModule
from polyhead.nn.inputs import PiecewiseLinear, auto_bins, column_edges, quantile_bins

OPTIONS = {
    "batch ensemble": dict(n_ensemble=4, ensemble="batch"),
    "packed ensemble": dict(n_ensemble=3, ensemble="packed"),
    "ple": dict(numeric_embedding="ple", n_bins=8, d_embedding=4),
    "periodic": dict(numeric_embedding="periodic", d_embedding=4),
    "category embeddings": dict(embed_above=2, d_embedding=3),
    "task layers": dict(head_hidden=(8,)),
    "experts": dict(experts=3),
    "per-task best epoch": dict(best_epoch="per_task"),
    "auto best epoch": dict(best_epoch="auto", n_ensemble=2),
    "robust": dict(numeric="robust"),
    "dwa": dict(weighting="dwa"),
    "famo": dict(weighting="famo"),
    "everything": dict(n_ensemble=3, ensemble="batch", numeric_embedding="ple", n_bins=6,
                       embed_above=2, head_hidden=(8,), best_epoch="per_task", weighting="dwa"),
}


@pytest.mark.parametrize("name", list(OPTIONS))
def test_each_option_fits_predicts_and_round_trips(name, tmp_path):
    X, y = make_mixed(240, missing=0.1)
    model = MultiTaskNet(tasks=MIXED_TASKS, **{**FAST, **OPTIONS[name]}).fit(X, y)
    pred = model.predict(X)
    assert pred.shape == (240, 3) and np.isfinite(pred["amount"]).all()
    assert np.allclose(model.predict_proba(X)["level"].sum(axis=1), 1)
    model.save(tmp_path / "m")
    again = polyhead.load(tmp_path / "m")
    pd.testing.assert_frame_equal(again.predict(X), pred)
    assert again.get_params() == model.get_params()
    # the same seed gives the same model
    twin = MultiTaskNet(tasks=MIXED_TASKS, **{**FAST, **OPTIONS[name]}).fit(X, y)
    pd.testing.assert_frame_equal(twin.predict(X), pred)


def test_batch_ensemble_layer_shares_one_weight_matrix():
    layer = BatchEnsembleLinear(4, 5, 3, first=True)
    assert layer.weight.shape == (5, 3) and layer.r.shape == (4, 1, 5) and layer.s.shape == (4, 1, 3)
    assert set(layer.r.detach().unique().tolist()) <= {-1.0, 1.0}      # TabM: random signs first
    assert torch.equal(layer.bias[0], layer.bias[1])                    # members start alike
    x = torch.randn(4, 7, 5)
    out = layer(x)
    manual = torch.stack([((x[i] * layer.r[i]) @ layer.weight) * layer.s[i] + layer.bias[i]
                          for i in range(4)])
    torch.testing.assert_close(out, manual)


def test_batch_ensemble_members_differ_and_average():
    X, y = make_mixed(200)
    model = MultiTaskNet(tasks={"amount": "regression"}, n_ensemble=4, ensemble="batch",
                         **FAST).fit(X, y[["amount"]])
    members = model._member_outputs(X)["amount"]
    assert members.shape == (4, 200)
    assert members.std(axis=0).mean() > 0                              # not four copies
    np.testing.assert_allclose(model.predict(X)["amount"], members.mean(axis=0))
    _, spread = model.predict(X, return_std=True)
    np.testing.assert_allclose(spread["amount"], members.std(axis=0))
    n_trunk = sum(p.numel() for n, p in model.module_.trunk.named_parameters() if n.endswith("weight"))
    single = MultiTaskNet(tasks={"amount": "regression"}, **FAST).fit(X, y[["amount"]])
    assert n_trunk == sum(p.numel() for n, p in single.module_.trunk.named_parameters()
                          if n.endswith("weight"))                      # shared weights


def test_piecewise_linear_encoding():
    values = np.linspace(0, 10, 101, dtype=np.float32)[:, None]
    edges = torch.as_tensor(quantile_bins(values, 4))
    assert edges.shape == (1, 5)
    ple = PiecewiseLinear(edges, d_embedding=2)
    enc = ple.encode(torch.tensor([[0.0], [1.25], [5.0], [10.0], [12.5], [-2.5]]))[:, 0]
    expected = [[0, 0, 0, 0], [0.5, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 2], [-1, 0, 0, 0]]
    torch.testing.assert_close(enc, torch.tensor(expected))
    # a column with two values: an edge at each (one real bin), the rest empty
    edges = torch.as_tensor(quantile_bins(np.array([[0.0], [1.0]] * 5, dtype=np.float32), 4))
    assert edges[0, :2].tolist() == [0.0, 1.0] and torch.isinf(edges[0, 2:]).all()
    enc = PiecewiseLinear(edges, 2).encode(torch.tensor([[0.25], [0.75]]))
    assert enc[:, 0].tolist() == [[0.25, 0.0, 0.0, 0.0], [0.75, 0.0, 0.0, 0.0]]


def test_bins_without_mass_points_are_the_plain_quantiles():
    values = np.random.default_rng(0).lognormal(size=(1000, 3)).astype(np.float32)
    levels = np.linspace(0, 1, 9)
    expected = np.quantile(values, levels, axis=0).T.astype(np.float32)
    np.testing.assert_array_equal(quantile_bins(values, 8), expected)


def test_a_mass_point_is_one_edge_and_the_other_values_share_the_bins():
    """A zero-inflated amount (0 in 92% of the rows): plain quantile edges on 8 bins were 0 and
    the maximum alone, one bin for every positive value; now 0 is one edge and the positive
    values are split by their own quantiles."""
    rng = np.random.default_rng(0)
    amount = np.where(rng.random(5000) < 0.92, 0.0, rng.lognormal(8, 1, 5000)).astype(np.float32)
    edges = column_edges(amount, 8)
    positive = amount[amount > 0]
    assert len(edges) == 9 and edges[0] == 0 and edges[-1] == positive.max()
    np.testing.assert_allclose(edges[1:-1], np.quantile(positive, np.linspace(0, 1, 9)[1:-1]), rtol=1e-6)
    counts = np.histogram(positive, edges)[0]
    assert counts.min() > 0.6 * counts.max()                       # every bin holds its share
    # a mode in the middle (a small count's usual value) is one edge, not several
    mode = np.concatenate([np.full(600, 3.0), rng.normal(3, 1, 400)]).astype(np.float32)
    edges = column_edges(mode, 8)
    assert np.all(np.diff(edges) > 0) and 3.0 in edges and len(edges) == 9
    # at most n_bins + 1 distinct values: an edge at each; one value: a bin of width 1
    assert column_edges(np.array([2, 5, 5, 7], dtype=np.float32), 8).tolist() == [2, 5, 7]
    assert column_edges(np.full(10, 4.0, dtype=np.float32), 8).tolist() == [4, 5]


def test_auto_bins_grow_with_the_rows_given_to_fit(tmp_path):
    """n_bins="auto" (the default and "best" presets): 8 bins on small data, one more per 400
    rows beyond 3,200, at most 64; the count used is kept in n_bins_ and the file; an explicit
    count wins."""
    assert [auto_bins(n) for n in (50, 3200, 3600, 4000, 10_000, 25_600, 10**6)] == [
        8, 8, 9, 10, 25, 64, 64]
    X, y = make_mixed(4000)
    kw = {**FAST, "numeric_embedding": "ple"}
    model = MultiTaskNet(tasks={"amount": "regression"}, n_bins="auto", **kw).fit(X, y[["amount"]])
    assert model.n_bins_ == 10 and model._layout["edges"].shape[1] == 11
    assert MultiTaskNet(tasks={"amount": "regression"}, n_bins=5, **kw).fit(
        X, y[["amount"]]).n_bins_ == 5
    assert MultiTaskNet(tasks={"amount": "regression"}, **kw).fit(
        X.iloc[:400], y[["amount"]].iloc[:400]).n_bins_ == 32         # "fast": 32 bins
    assert MultiTaskNet._resolve_bins("auto", X.to_numpy()) == 10     # arrays: their rows
    assert MultiTaskNet._resolve_bins("auto", X.to_numpy().tolist()) == 10
    assert MultiTaskNet._resolve_bins("auto", SimpleNamespace(num_rows=30_000)) == 64  # a source
    # the default on more than 3,200 rows probes 8 bins and the grown count, keeping the
    # grown one only where it beats 8 beyond the noise
    chosen = MultiTaskNet(tasks={"amount": "regression"}, hidden=(8,), max_epochs=4, n_ensemble=2,
                          random_state=0).fit(X, y[["amount"]])
    assert set(chosen.embedding_scores_) == {"none", "ple", "ple@10"}
    assert chosen.n_bins_ in (8, 10) and np.isfinite(list(chosen.embedding_scores_.values())).all()
    again = MultiTaskNet(tasks={"amount": "regression"}, hidden=(8,), max_epochs=4, n_ensemble=2,
                         random_state=0).fit(X, y[["amount"]])          # three probes, same seed
    pd.testing.assert_frame_equal(again.predict(X.head(50)), chosen.predict(X.head(50)))
    chosen.save(tmp_path / "m")                                       # the file keeps all three
    assert polyhead.load(tmp_path / "m").embedding_scores_ == chosen.embedding_scores_
    small = MultiTaskNet(tasks={"amount": "regression"}, hidden=(8,), max_epochs=4, n_ensemble=2,
                         random_state=0).fit(X.iloc[:3000], y[["amount"]].iloc[:3000])
    assert set(small.embedding_scores_) == {"none", "ple"} and small.n_bins_ == 8


def test_input_block_routes_columns():
    block = InputBlock(5, embedded=[0, 1], codes=[4], cardinalities=[6],
                       numeric_embedding="periodic", d_embedding=3, d_category=2)
    assert block.out_features == 2 + 2 * 3 + 2                        # 2 passthrough columns
    x = torch.tensor([[0.1, 0.2, 1.0, 0.0, 5.0]])
    assert block(x).shape == (1, 10)
    assert block(x.expand(3, 1, 5)).shape == (3, 1, 10)


def test_only_numeric_columns_with_more_than_two_values_are_embedded():
    X, y = make_mixed(200)
    X = X.assign(flag=np.arange(200) % 2)
    model = MultiTaskNet(tasks={"amount": "regression"}, numeric_embedding="ple", n_bins=4,
                         **FAST).fit(X, y[["amount"]])
    names = model.features_.feature_names_out_
    assert [names[i] for i in model._layout["embedded"]] == ["a", "b"]


def test_high_cardinality_columns_get_embedding_codes():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=300), "shop": rng.choice([f"s{i}" for i in range(40)], 300)})
    y = pd.DataFrame({"t": X.a + (X.shop == "s3") * 2.0})
    model = MultiTaskNet(embed_above=10, d_embedding=5, **FAST).fit(X, y)
    assert model.features_.roles_ == ["numeric", "code"]
    table = model.module_.inputs.categories[0]
    assert table.num_embeddings == 42 and table.embedding_dim == 5     # 40 + unseen + nothing missing
    unseen = model.predict(pd.DataFrame({"a": [0.0], "shop": ["never-seen"]}))
    assert np.isfinite(unseen["t"]).all()


def test_task_layers_and_experts_shape_the_module():
    module = MultiTaskModule(6, {"a": 1, "b": 3}, hidden=(8,), head_hidden=(4,), experts=2)
    out = module(torch.randn(5, 6))
    assert out["a"].shape == (5, 1) and out["b"].shape == (5, 3)
    gates = module.experts.gates
    assert set(gates) == {"a", "b"}
    ens = MultiTaskModule(6, {"a": 1, "b": 3}, hidden=(8,), k=3, ensemble="batch")
    assert ens(torch.randn(5, 6))["b"].shape == (3, 5, 3)


def test_per_task_best_epochs_keep_only_the_snapshots_tasks_need(tmp_path):
    X, y = make_mixed(300)
    model = MultiTaskNet(tasks=MIXED_TASKS, best_epoch="per_task", **{**FAST, "max_epochs": 30}).fit(X, y)
    epochs = model.task_best_epochs_
    assert set(epochs) == set(MIXED_TASKS)
    assert set(model._snapshots) == set(epochs.values()) - {model.best_epoch_}
    for task, epoch in epochs.items():
        valid = [r["valid"][task] for r in model.history_]
        assert valid[epoch - 1] == min(valid)                         # its own best epoch
    manifest = model._get_state()[0]
    assert manifest["training"]["task_best_epochs"] == epochs
    # a task predicted from its snapshot differs from the joint weights' prediction
    joint = MultiTaskNet(tasks=MIXED_TASKS, **{**FAST, "max_epochs": 30}).fit(X, y)
    if model._snapshots:
        assert not model.predict(X).equals(joint.predict(X))


def test_per_task_best_epochs_stop_when_the_joint_loss_stops_improving():
    """Only the total validation loss resets the patience: tracking each task's own best
    epoch trains exactly the epochs a joint fit trains, and looks among them."""
    X, y = make_mixed(300)
    kw = {**FAST, "max_epochs": 200, "patience": 3, "lr": 0.03}
    joint = MultiTaskNet(tasks=MIXED_TASKS, **kw).fit(X, y)
    per_task = MultiTaskNet(tasks=MIXED_TASKS, best_epoch="per_task", **kw).fit(X, y)
    assert joint.n_iter_ < 200                                          # it stopped early
    assert per_task.n_iter_ == joint.n_iter_ == joint.best_epoch_ + 3
    assert per_task.best_epoch_ == joint.best_epoch_
    assert max(per_task.task_best_epochs_.values()) <= per_task.n_iter_


def test_weighting_strategies_adapt_their_weights():
    from polyhead.nn.weighting import DWA, FAMO

    class Kind:
        uncertainty_factor = 1.0

    dwa = DWA(temperature=1.0)
    dwa.setup([Kind(), Kind()], [1.0, 1.0])
    for losses in ([1.0, 1.0], [0.5, 1.0], [0.25, 1.0]):              # task 0 keeps falling
        dwa.on_epoch_end(torch.tensor(losses))
    w = dwa.effective_weights()
    assert w[1] > w[0] and sum(w) == pytest.approx(2.0)
    famo = FAMO(lr=0.1)
    famo.setup([Kind(), Kind()], [1.0, 1.0])
    for step in range(20):                                             # task 1 never improves
        famo.after_backward(torch.tensor([1.0 / (step + 1), 1.0]))
    w = famo.effective_weights()
    assert w[1] > w[0]
    assert torch.isfinite(famo(torch.tensor([0.3, 0.7])))


def test_auto_best_epochs_keep_own_epochs_only_beyond_the_noise(tmp_path):
    """best_epoch="auto" trains exactly as "per_task", then each task keeps its own epoch or
    goes back to the joint one; the snapshots kept are exactly those still needed, the
    validation score is that of the epochs that predict, and the file keeps the choice."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(400, 4)), columns=list("abcd"))
    y = pd.DataFrame({"signal": np.sin(3 * X.a) + X.b ** 2 + rng.normal(scale=0.1, size=400),
                      "sign": (X.c > 0).astype(int), "noise": rng.normal(size=400)})
    kw = dict(hidden=(32,), max_epochs=150, random_state=0, preset="fast")
    per_task = MultiTaskNet(best_epoch="per_task", **kw).fit(X, y)
    auto = MultiTaskNet(best_epoch="auto", **kw).fit(X, y)
    assert auto.best_epoch_ == per_task.best_epoch_ and auto.n_iter_ == per_task.n_iter_
    for name, epoch in auto.task_best_epochs_.items():
        assert epoch in (per_task.task_best_epochs_[name], auto.best_epoch_)
    assert set(auto._snapshots) == set(auto.task_best_epochs_.values()) - {auto.best_epoch_}
    by_epoch = {h["epoch"]: h["valid"] for h in auto.history_}
    assert auto._validation_score() == pytest.approx(sum(
        by_epoch[auto.task_best_epochs_[n]][n] for n in y.columns))
    auto.save(tmp_path / "m")
    again = polyhead.load(tmp_path / "m")
    assert again.task_best_epochs_ == auto.task_best_epochs_
    pd.testing.assert_frame_equal(again.predict(X), auto.predict(X))
    # a validation split of one row cannot pair: every task goes back to the joint epoch
    tiny = MultiTaskNet(best_epoch="auto", validation_fraction=0.003, **kw).fit(X, y)
    assert len(tiny.validation_indices_) == 1
    assert set(tiny.task_best_epochs_.values()) == {tiny.best_epoch_} and not tiny._snapshots


@pytest.mark.parametrize("mode", ["joint", "per_task", "auto"])
def test_block_losses_are_those_of_the_weights_that_predict(mode):
    """The paired choice's per-block losses use each task's predicting epoch: over equal runs
    of validation rows their mean is the validation score of those epochs."""
    rng = np.random.default_rng(1)
    X = pd.DataFrame(rng.normal(size=(400, 3)), columns=list("abc"))
    y = pd.DataFrame({"r": X.a - X.b ** 2 + rng.normal(scale=0.3, size=400),
                      "c": (X.c + rng.normal(scale=0.5, size=400) > 0).astype(int)})
    model = MultiTaskNet(best_epoch=mode, hidden=(16,), max_epochs=60, n_ensemble=2,
                         random_state=0, preset="fast")
    model._score_blocks = 20
    model.fit(X, y)
    assert len(model.validation_indices_) == 40 and model._valid_blocks.shape == (20,)
    assert model._valid_blocks.mean() == pytest.approx(model._validation_score(), rel=1e-5)
    if mode == "per_task":
        assert model._snapshots  # some task predicts from its own epoch here


def test_beyond_noise_needs_a_mean_gain_above_one_standard_error():
    assert _beyond_noise(np.array([0.05, 0.05, 0.06, 0.04]))
    assert not _beyond_noise(np.array([0.6, -0.5, 0.5, -0.4, 0.4, -0.5, 0.5, -0.45]))
    assert not _beyond_noise(np.array([-0.05, -0.05, -0.05]))
    assert not _beyond_noise(np.array([1.0]))           # one block cannot pair
    gain = np.array([0.3, -0.1, 0.2, 0.0, 0.25, -0.05])   # mean 0.1, about 1.4 standard errors
    assert _beyond_noise(gain) and _beyond_noise(gain, 1.2) and not _beyond_noise(gain, 1.5)


def test_auto_embedding_keeps_the_candidate_with_the_lower_validation_loss(tmp_path):
    """numeric_embedding="auto" trains without and with piecewise-linear embeddings on the same
    split and seed; the fitted model is exactly the winning candidate's fit, and it says which."""
    X, y = make_mixed(240, missing=0.1)
    kw = {**FAST, "n_bins": 6}
    auto = MultiTaskNet(tasks=MIXED_TASKS, numeric_embedding="auto", **kw).fit(X, y)
    assert set(auto.embedding_scores_) == {"none", "ple"}
    assert not hasattr(auto, "_valid_blocks") and not hasattr(auto, "_score_blocks")
    plain = MultiTaskNet(tasks=MIXED_TASKS, numeric_embedding="none", **kw)
    ple = MultiTaskNet(tasks=MIXED_TASKS, numeric_embedding="ple", **kw)
    for candidate in (plain, ple):
        candidate._score_blocks = 20
        candidate.fit(X, y)
        assert candidate._valid_blocks.shape == (20,) and np.isfinite(candidate._valid_blocks).all()
    scores = {"none": plain._validation_score(), "ple": ple._validation_score()}
    assert auto.embedding_scores_ == scores
    winner = ple if _embedding_wins(plain, ple, scores) else plain
    assert auto.numeric_embedding_ == winner.numeric_embedding_ and auto.n_bins_ == 6
    pd.testing.assert_frame_equal(auto.predict(X), winner.predict(X))
    np.testing.assert_array_equal(auto.validation_indices_, plain.validation_indices_)
    np.testing.assert_array_equal(plain.validation_indices_, ple.validation_indices_)
    assert auto.get_params()["numeric_embedding"] == "auto"          # what the user gave
    auto.save(tmp_path / "m")
    again = polyhead.load(tmp_path / "m")
    assert again.numeric_embedding_ == auto.numeric_embedding_
    assert again.embedding_scores_ == auto.embedding_scores_
    pd.testing.assert_frame_equal(again.predict(X), auto.predict(X))


@pytest.mark.parametrize("forced", ["none", "ple"])
def test_auto_embedding_decides_on_one_member_probes_then_trains_every_member(monkeypatch, forced):
    """With more members than a probe has, numeric_embedding="auto" fits the two candidates
    with probe_members members each (the preset's: 1), decides on their validation losses, then
    trains the chosen inputs with every member: that fit, bit for bit, as if the choice had been
    given. With probes as large as the ensemble ("best"), the winning probe is the model."""
    from polyhead.models import net as net_module

    X, y = make_mixed(240, missing=0.1)
    kw = {**FAST, "n_bins": 6, "n_ensemble": 3}
    fits: list[tuple[object, int]] = []
    fit_loop = MultiTaskNet.fit_loop

    def recording(self, *args):
        fits.append((self.numeric_embedding_, self.n_ensemble_))
        return fit_loop(self, *args)

    monkeypatch.setattr(MultiTaskNet, "fit_loop", recording)
    # a threshold no gain reaches, or one every gain passes: each choice once
    threshold = math.inf if forced == "none" else -math.inf
    monkeypatch.setattr(net_module, "_choice_z", lambda members: threshold)
    auto = MultiTaskNet(tasks=MIXED_TASKS, numeric_embedding="auto", **kw).fit(X, y)
    probes = auto.probe_members_
    assert probes == 1
    assert sorted(fits[:2], key=str) == sorted([(None, probes), ("ple", probes)], key=str)
    assert fits[2:] == [(None if forced == "none" else "ple", 3)]
    assert auto.n_ensemble_ == 3 and auto.numeric_embedding_ == (None if forced == "none" else "ple")
    monkeypatch.setattr(MultiTaskNet, "fit_loop", fit_loop)
    scores = {}
    for candidate in ("none", "ple"):
        probe = MultiTaskNet(tasks=MIXED_TASKS, numeric_embedding=candidate,
                             **{**kw, "n_ensemble": probes}).fit(X, y)
        scores[candidate] = probe._validation_score()
    assert auto.embedding_scores_ == scores                    # the probes' losses
    direct = MultiTaskNet(tasks=MIXED_TASKS, numeric_embedding=forced, **kw).fit(X, y)
    pd.testing.assert_frame_equal(auto.predict(X), direct.predict(X))
    assert auto.best_epoch_ == direct.best_epoch_ and auto.n_iter_ == direct.n_iter_
    # a progress report assigned on the instance (as the CLI does) follows the final fit
    reported: list[int] = []
    watched = MultiTaskNet(tasks=MIXED_TASKS, numeric_embedding="auto", **kw)
    watched.on_epoch_end = lambda record, improved: reported.append(record["epoch"])
    watched.fit(X, y)
    assert reported == [h["epoch"] for h in watched.history_] and reported
    # probes of every member: the two candidates are the full fits, the winner is kept
    fits.clear()
    monkeypatch.setattr(MultiTaskNet, "fit_loop", recording)
    full = MultiTaskNet(tasks=MIXED_TASKS, numeric_embedding="auto", probe_members=3, **kw).fit(X, y)
    assert sorted(fits, key=str) == sorted([(None, 3), ("ple", 3)], key=str)
    assert full.probe_members_ == 3 and full.numeric_embedding_ == auto.numeric_embedding_
    pd.testing.assert_frame_equal(full.predict(X), direct.predict(X))


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_auto_embedding_candidates_side_by_side_fit_as_one_after_another(monkeypatch, dropout):
    """The two candidates train side by side in threads where CPUs are free, and the result
    is the same as one after another, bit for bit; the caller's torch RNG is left as it was.
    With dropout (draws from torch's one generator) they always train one after another."""
    import threading

    from polyhead import parallel

    X, y = make_mixed(240, missing=0.1)
    kw = {**FAST, "n_bins": 6, "numeric_embedding": "auto", "dropout": dropout}
    threads: list[str] = []
    fit_loop = MultiTaskNet.fit_loop

    def recording(self, *args):
        threads.append(threading.current_thread().name)
        return fit_loop(self, *args)

    monkeypatch.setattr(MultiTaskNet, "fit_loop", recording)
    fitted = {}
    for workers in (1, 2):
        monkeypatch.setattr(parallel, "side_by_side", lambda n, w=workers: min(n, w))
        threads.clear()
        torch.manual_seed(123)
        state = torch.get_rng_state()
        fitted[workers] = MultiTaskNet(tasks=MIXED_TASKS, **kw).fit(X, y)
        assert torch.equal(torch.get_rng_state(), state)
        side_by_side = workers == 2 and dropout == 0
        assert len(threads) == 2
        assert all(name.startswith("polyhead") == side_by_side for name in threads)
    # larger steps already use every CPU one fit at a time; dropout draws from one generator
    monkeypatch.setattr(parallel, "side_by_side", lambda n: n)
    for params, workers in (({}, 2 if dropout == 0 else 1), ({"hidden": (512, 512)}, 1)):
        net = MultiTaskNet(tasks=MIXED_TASKS, **{**kw, **params})
        net.n_ensemble_, net.numeric_ = 8, "clipped"
        assert net._candidate_workers(X, y, None, 2) == workers
    # the step size that decides: below SIDE_BY_SIDE_WORK side by side (above SMALL_WORK too:
    # such a fit would take two threads on its own, and gains less from them), else one at a time
    for work, workers in ((parallel.SMALL_WORK * 2, 2), (parallel.SIDE_BY_SIDE_WORK, 1)):
        monkeypatch.setattr(MultiTaskNet, "_step_work", lambda self, rows, w=work: w)
        net = MultiTaskNet(tasks=MIXED_TASKS, **kw)
        net.n_ensemble_, net.numeric_ = 8, "clipped"
        assert net._candidate_workers(X, y, None, 2) == (workers if dropout == 0 else 1)
    assert fitted[1].embedding_scores_ == fitted[2].embedding_scores_
    assert fitted[1].numeric_embedding_ == fitted[2].numeric_embedding_
    pd.testing.assert_frame_equal(fitted[1].predict(X), fitted[2].predict(X))


@pytest.mark.parametrize("name", ["famo", "dwa", "batch ensemble", "periodic", "experts",
                                  "auto best epoch", "dropout"])
def test_training_draws_nothing_from_the_callers_torch_generator(name):
    """Training outside torch's seeded block (what lets candidates train side by side) must not
    draw from torch's global generator: the caller's stream is the same after a fit."""
    opts = {"dropout": {"dropout": 0.1}}.get(name) or OPTIONS.get(name) or {"weighting": name}
    X, y = make_mixed(160, missing=0.1)
    torch.manual_seed(5)
    MultiTaskNet(tasks=MIXED_TASKS, **{**FAST, "max_epochs": 3, **opts}).fit(X, y)
    after = torch.rand(3)
    torch.manual_seed(5)
    assert torch.equal(after, torch.rand(3))


def test_side_by_side_takes_only_free_cpus_and_runs_each_call_single_threaded(monkeypatch):
    from polyhead import parallel

    monkeypatch.setattr(parallel, "available_cpus", lambda: 4)
    for others, workers in ((0, 2), (2, 2), (3, 1), (8, 1)):
        monkeypatch.setattr(parallel, "others_running", lambda o=others: o)
        assert parallel.side_by_side(2) == workers
    monkeypatch.setattr(parallel, "others_running", lambda: 0)
    assert parallel.side_by_side(3) == 3 and parallel.side_by_side(1) == 1
    with parallel.single_threaded():                    # under outer parallelism: one at a time
        assert parallel.side_by_side(2) == 1
    assert isinstance(parallel.others_running(), int) and parallel.others_running() >= 0

    before = torch.get_num_threads()
    seen = parallel.run_side_by_side(
        [lambda i=i: (i, parallel.nested(), torch.get_num_threads()) for i in range(3)], 2)
    assert seen == [(i, True, 1) for i in range(3)]     # in order, each single-threaded
    assert torch.get_num_threads() == before and not parallel.nested()
    assert parallel.run_side_by_side([lambda: parallel.nested()], 1) == [False]

    def fails() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        parallel.run_side_by_side([lambda: 1, fails], 2)

    # a failure sets the event the other call watches: it stops, and the failure is raised
    import threading

    cancel, stopped = threading.Event(), []

    def watches() -> None:
        assert cancel.wait(timeout=30), "never cancelled"
        stopped.append(True)
        raise RuntimeError("stopped")

    with pytest.raises(ValueError, match="boom"):
        parallel.run_side_by_side([watches, fails], 2, cancel)
    assert stopped == [True]


def test_a_failing_embedding_candidate_stops_the_other(monkeypatch):
    """Side by side, when one candidate fails the other stops at its next epoch (it does not
    train to the end), and the user sees the first failure."""
    from polyhead import parallel

    X, y = make_mixed(240, missing=0.1)
    epochs: list[str] = []
    layout = MultiTaskNet._input_layout

    def failing_layout(self, features):
        if self.numeric_embedding_ == "ple":
            import time

            time.sleep(0.2)  # the plain candidate is training by now
            raise ValueError("the embedded candidate broke")
        return layout(self, features)

    monkeypatch.setattr(MultiTaskNet, "_input_layout", failing_layout)
    monkeypatch.setattr(MultiTaskNet, "on_epoch_end",
                        lambda self, record, improved: epochs.append(self.numeric_embedding_))
    monkeypatch.setattr(parallel, "side_by_side", lambda n: n)
    net = MultiTaskNet(tasks=MIXED_TASKS, **{**FAST, "numeric_embedding": "auto",
                                             "max_epochs": 100_000, "patience": 100_000})
    with pytest.raises(ValueError, match="embedded candidate broke"):
        net.fit(X, y)
    assert 0 < len(epochs) < 100_000 and set(epochs) == {None}


def test_auto_embedding_switches_only_on_a_gain_beyond_the_noise():
    """The embedded fit replaces the plain one only when its validation loss is lower by more
    than one standard error of the per-block paired difference; splits too small to pair
    compare the totals."""

    def fit(blocks, mode="joint"):
        return SimpleNamespace(_valid_blocks=np.asarray(blocks, dtype=float), _best_epoch_mode=mode)

    plain = [1.0, 1.2, 0.8, 1.1, 0.9, 1.0, 1.3, 0.7]
    steady = [v - 0.05 for v in plain]                        # a little better on every block
    noisy = [v + d for v, d in zip(plain, [-0.6, 0.5, -0.5, 0.4, -0.4, 0.5, -0.5, 0.45], strict=True)]
    scores = {"none": float(np.mean(plain)), "ple": float(np.mean(noisy))}
    assert scores["ple"] < scores["none"]                    # lower in total, but by noise
    assert _embedding_wins(fit(plain), fit(steady), scores)
    assert not _embedding_wins(fit(plain), fit(noisy), scores)
    assert _embedding_wins(fit([1.0]), fit([2.0]), scores)   # one block: the totals
    assert _embedding_wins(fit([1.0]), fit([2.0]), {"ple": 2.0, "ple@64": 1.0}, keys=("ple", "ple@64"))
    assert not _embedding_wins(fit(plain), fit([v + 0.05 for v in plain]), scores)


def test_auto_embedding_without_a_seed_compares_on_one_split():
    X, y = make_mixed(200)
    auto = MultiTaskNet(tasks=MIXED_TASKS, numeric_embedding="auto",
                        **{**FAST, "random_state": None, "max_epochs": 3}).fit(X, y)
    assert auto.numeric_embedding_ in (None, "ple") and np.isfinite(list(auto.embedding_scores_.values())).all()


@pytest.mark.parametrize("bad", [{"validation_fraction": 0.0}, {"early_stopping": False}])
def test_auto_embedding_needs_a_validation_loss(bad):
    X, y = make_mixed(120)
    with pytest.raises(polyhead.PolyheadError, match="validation"):
        MultiTaskNet(tasks=MIXED_TASKS, numeric_embedding="auto", **{**FAST, **bad}).fit(X, y)


def test_default_and_best_presets_choose_the_embedding_fast_and_balanced_have_none():
    X, y = make_mixed(200)
    for preset in ("default", "best"):
        chosen = MultiTaskNet(tasks=MIXED_TASKS, preset=preset, hidden=(8,), max_epochs=3,
                              random_state=0).fit(X, y)
        assert chosen.n_bins_ == 8 and set(chosen.embedding_scores_) == {"none", "ple"}
    for preset in ("fast", "balanced"):
        plain = MultiTaskNet(tasks=MIXED_TASKS, preset=preset, hidden=(8,), max_epochs=3,
                             random_state=0).fit(X, y)
        assert plain.numeric_embedding_ is None and plain.embedding_scores_ == {}


@pytest.mark.parametrize("no_split", [{"validation_fraction": 0.0}, {"early_stopping": False}])
def test_the_presets_auto_embedding_trains_once_plainly_without_a_validation_split(no_split):
    """The default preset's embedding choice needs a validation loss: without one the preset
    trains one plain network (what the user did not ask for is not an error), exactly the fit
    with numeric_embedding="none"; asked for explicitly, "auto" still refuses (test above)."""
    X, y = make_mixed(150)
    kw = dict(tasks=MIXED_TASKS, hidden=(8,), max_epochs=3, random_state=0, **no_split)
    default = MultiTaskNet(**kw).fit(X, y)
    assert default.numeric_embedding_ is None and default.embedding_scores_ == {}
    plain = MultiTaskNet(numeric_embedding="none", **kw).fit(X, y)
    pd.testing.assert_frame_equal(default.predict(X), plain.predict(X))


@pytest.mark.parametrize("kw", [dict(n_ensemble=1), dict(n_ensemble=3),
                                dict(n_ensemble=2, head_hidden=(4,))],
                         ids=["one network", "packed members", "task layers"])
def test_block_losses_take_one_forward_pass_and_equal_each_run_scored_alone(kw):
    """The noise rules (embedding choice, per-task epochs) score 20 runs of validation rows
    per set of weights: one forward pass over the rows, then each run's losses from its slice
    of the outputs, the same losses as scoring each run on its own."""
    X, y = make_mixed(200)
    y = y[list(MIXED_TASKS)]
    model = MultiTaskNet(tasks=MIXED_TASKS, **{**FAST, **kw}).fit(X, y)
    x = torch.from_numpy(model.features_.transform(model._check_X(X, fit=False))[:40])
    encoded = model.encode_targets(y, model._training_weights)
    targets = {k: (torch.from_numpy(v[:40]), None if w is None else torch.from_numpy(w[:40]))
               for k, (v, w) in encoded.items()}
    calls = []
    model._forward = lambda inputs: calls.append(len(inputs)) or model.module_(inputs)
    blocks = model._block_task_losses(x, targets, 20)
    assert calls == [40] and blocks.shape == (20, len(MIXED_TASKS))
    alone = [model.evaluate_losses(x[a:a + 2], {k: (v[a:a + 2], None if w is None else w[a:a + 2])
                                                for k, (v, w) in targets.items()}).numpy()
             for a in range(0, 40, 2)]
    np.testing.assert_allclose(blocks, np.nan_to_num(np.array(alone)), rtol=1e-5, atol=1e-6)
