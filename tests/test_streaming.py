"""Out-of-core training from Parquet, and distributed training with torch.distributed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import FAST, make_mixed

import polyhead
from polyhead import distributed
from polyhead.exceptions import PolyheadError
from polyhead.io.parquet import ParquetSource
from polyhead.streaming import ShuffleBuffer, summarise

pytest.importorskip("pyarrow")

TASKS = {"amount": "regression", "kind": "binary", "level": "multiclass",
         "tags": polyhead.Task("tags", kind="multilabel", columns=["t1", "t2", "t3"])}


def write_parts(tmp_path: Path, frame: pd.DataFrame, parts: int = 3, row_group: int = 50) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    for i, chunk in enumerate(np.array_split(np.arange(len(frame)), parts)):
        frame.iloc[chunk].to_parquet(folder / f"part-{i}.parquet", row_group_size=row_group, index=False)
    return folder


@pytest.fixture
def table() -> pd.DataFrame:
    X, y = make_mixed(600, missing=0.2)
    return pd.concat([X, y], axis=1)


@pytest.fixture
def folder(tmp_path: Path, table: pd.DataFrame) -> Path:
    return write_parts(tmp_path, table)


# -- the source --------------------------------------------------------------------------------
def test_a_source_is_a_file_a_directory_a_glob_or_a_list(folder: Path) -> None:
    files = sorted(str(p) for p in folder.glob("*.parquet"))
    by_dir = ParquetSource(folder)
    assert by_dir.files == files and by_dir.num_rows == 600
    assert len(by_dir.pieces) == 12  # 200 rows per file, row groups of 50
    assert ParquetSource(str(folder / "part-*.parquet")).files == files
    assert ParquetSource(files[:2]).num_rows == 400
    assert ParquetSource(files[0]).num_rows == 200
    import pyarrow.dataset as ds

    assert ParquetSource(ds.dataset(str(folder))).num_rows == 600
    piece = by_dir.pieces[5]
    frames = list(by_dir.batches(piece, ["a", "colour"]))
    assert sum(len(f) for f in frames) == piece.num_rows and list(frames[0].columns) == ["a", "colour"]


def test_bad_sources_are_one_line(tmp_path: Path, folder: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(PolyheadError, match="no .parquet files"):
        ParquetSource(tmp_path / "empty")
    with pytest.raises(PolyheadError, match="no file matches"):
        ParquetSource(str(tmp_path / "nothing-*.parquet"))
    broken = tmp_path / "broken.parquet"
    data = (folder / "part-0.parquet").read_bytes()
    broken.write_bytes(data[: len(data) // 2])  # truncated: no footer
    with pytest.raises(PolyheadError, match="broken.parquet: not a readable Parquet file"):
        ParquetSource(broken)
    other = tmp_path / "other"
    other.mkdir()
    pd.DataFrame({"a": [1.0]}).to_parquet(other / "x.parquet")
    pd.DataFrame({"b": [1.0]}).to_parquet(other / "y.parquet")
    with pytest.raises(PolyheadError, match="columns differ"):
        ParquetSource(other)
    with pytest.raises(PolyheadError, match="buffer_rows=0"):
        ParquetSource(folder, buffer_rows=0)
    with pytest.raises(PolyheadError, match="column 'nope' is not in"):
        ParquetSource(folder).feature_columns(["nope"])


def test_a_damaged_row_group_is_named(tmp_path: Path, folder: Path) -> None:
    path = folder / "part-1.parquet"
    data = bytearray(path.read_bytes())
    data[200:1200] = bytes(1000)  # the first row group's pages, zeroed; the footer intact
    path.write_bytes(bytes(data))
    source = ParquetSource(folder)
    with pytest.raises(PolyheadError, match="part-1.parquet: cannot read row group 0"):
        for piece in source.pieces:
            for _ in source.batches(piece, source.columns):
                pass


# -- pass 1 ------------------------------------------------------------------------------------
def test_the_summary_is_exact_where_it_must_be(folder: Path, table: pd.DataFrame) -> None:
    source = ParquetSource(folder)
    features, targets = ["a", "b", "colour"], ["kind", "level"]
    summary = summarise(source, source.pieces, features, targets, sample_rows=40, seed=0)
    assert summary.rows == 600 and len(summary.sample) == 40
    stats = summary.column_stats()
    assert stats["a"].mean == pytest.approx(table["a"].mean())
    assert stats["a"].std == pytest.approx(table["a"].std(ddof=0))
    assert stats["colour"].counts.sort_index().to_dict() == table["colour"].value_counts().sort_index().to_dict()
    assert summary.labels["kind"] == table["kind"].notna().sum()
    # every label is in the fitting frame, even those the sample missed
    frame = summary.fitting_frame()
    assert set(frame["level"].dropna()) == set(table["level"].dropna())


def test_summaries_merge_as_one_pass(folder: Path) -> None:
    source = ParquetSource(folder)
    args = (["a", "colour"], ["level"])
    whole = summarise(source, source.pieces, *args, sample_rows=50, seed=3)
    left = summarise(source, source.pieces[0::2], *args, sample_rows=50, seed=3)
    right = summarise(source, source.pieces[1::2], *args, sample_rows=50, seed=3)
    merged = left.merge(right)
    assert merged.rows == whole.rows
    np.testing.assert_allclose(merged.moments["a"], whole.moments["a"])
    pd.testing.assert_frame_equal(merged.fitting_frame(), whole.fitting_frame())


def test_a_class_seen_once_is_kept(tmp_path: Path) -> None:
    X, y = make_mixed(2000, seed=1)
    frame = pd.concat([X, y[["amount", "level"]]], axis=1)
    frame.loc[1777, "level"] = 9  # one row in 2,000, far outside a 30-row sample
    folder = write_parts(tmp_path, frame, parts=2, row_group=250)
    net = polyhead.MultiTaskNet({"amount": "regression", "level": "multiclass"}, **{**FAST, "max_epochs": 2})
    net.fit(ParquetSource(folder, sample_rows=30))
    assert 9 in net.classes_["level"].tolist()


def test_the_shuffle_buffer_gives_every_row_once_and_holds_a_bounded_number() -> None:
    buffer = ShuffleBuffer(100, np.random.default_rng(0))
    out = []
    for start in range(0, 1000, 64):
        rows = np.arange(start, min(start + 64, 1000))
        for block in buffer.add([rows, rows * 2]):
            assert np.array_equal(block[1], block[0] * 2)  # arrays stay aligned
            out.append(block[0])
        assert buffer.rows <= 100
    out += [b[0] for b in buffer.drain()]
    got = np.concatenate(out)
    assert sorted(got.tolist()) == list(range(1000))
    assert not np.array_equal(got, np.arange(1000))


# -- pass 2 ------------------------------------------------------------------------------------
def test_a_streamed_net_learns_every_kind_with_missing_labels(folder: Path, table: pd.DataFrame) -> None:
    X, y = table[["a", "b", "colour"]], table.drop(columns=["a", "b", "colour"])
    net = polyhead.MultiTaskNet(TASKS, **{**FAST, "max_epochs": 30})
    net.fit(ParquetSource(folder, buffer_rows=64))
    assert net.streamed_ and net.world_size_ == 1 and net.rows_seen_ == 600
    assert net.history_[0]["valid"] is not None  # 12 pieces: one held out
    scores = net.evaluate(X, y)
    assert scores.loc["amount", "r2"] > 0.5
    assert scores.loc["kind", "accuracy"] > 0.7
    assert list(net.predict(X.head(3)).columns) == ["amount", "kind", "level", "t1", "t2", "t3"]


def test_streaming_is_deterministic_by_seed_and_round_trips(folder: Path, tmp_path: Path,
                                                          table: pd.DataFrame) -> None:
    X = table[["a", "b", "colour"]]
    kw = {**FAST, "max_epochs": 4, "n_ensemble": 2, "numeric_embedding": "ple"}
    first = polyhead.MultiTaskNet(TASKS, **kw).fit(ParquetSource(folder, buffer_rows=100))
    second = polyhead.MultiTaskNet(TASKS, **kw).fit(ParquetSource(folder, buffer_rows=100))
    pd.testing.assert_frame_equal(first.predict_frame(X, proba=True), second.predict_frame(X, proba=True))
    first.save(tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["training"]["world_size"] == 1 and manifest["training"]["streamed"] is True
    loaded = polyhead.load(tmp_path / "m")
    pd.testing.assert_frame_equal(loaded.predict_frame(X, proba=True), first.predict_frame(X, proba=True))
    assert loaded.world_size_ == 1 and loaded.streamed_


def test_few_pieces_hold_out_rows_within_them(tmp_path: Path, table: pd.DataFrame) -> None:
    path = tmp_path / "one.parquet"
    table.to_parquet(path, index=False)  # one row group
    net = polyhead.MultiTaskNet(TASKS, **{**FAST, "max_epochs": 3}).fit(ParquetSource(path))
    assert net.history_[0]["valid"] is not None
    no_valid = polyhead.MultiTaskNet(TASKS, **{**FAST, "max_epochs": 3, "validation_fraction": 0.0})
    assert no_valid.fit(ParquetSource(path)).history_[0]["valid"] is None


def test_streaming_misuse_is_one_line(folder: Path, table: pd.DataFrame) -> None:
    source = ParquetSource(folder)
    with pytest.raises(PolyheadError, match="needs its targets"):
        polyhead.MultiTaskNet(**FAST).fit(source)
    with pytest.raises(PolyheadError, match="pass no y"):
        polyhead.MultiTaskNet(TASKS, **FAST).fit(source, table[["amount"]])
    with pytest.raises(PolyheadError, match="MultiTaskForest cannot train from a stream"):
        polyhead.MultiTaskForest(TASKS).fit(source)
    # tasks inferred from the targets the source names
    net = polyhead.MultiTaskNet(**{**FAST, "max_epochs": 2})
    net.fit(ParquetSource(folder, targets=["amount", "kind"]))
    assert [t.kind for t in net.tasks_.values()] == ["regression", "binary"]


# -- several processes ---------------------------------------------------------------------------
def _rank_one_dies() -> None:
    if distributed.rank() == 1:
        os._exit(3)
    distributed.all_gather("waiting for rank 1")


def _fails_everywhere() -> None:
    raise PolyheadError("bad things")


@pytest.mark.slow
def test_a_distributed_fit_on_two_processes(folder: Path, tmp_path: Path, table: pd.DataFrame) -> None:
    from polyhead.cli import main

    out = tmp_path / "m2"
    with pytest.raises(SystemExit) as done:
        main(["fit", str(folder), "-o", str(out), "-t", "amount", "-t", "kind:binary", "-t",
              "level:multiclass", "--nproc", "2", "--json", "--drop", "t1,t2,t3", "-p", "hidden=16", "-p", "max_epochs=6",
              "-p", "preset=fast"])
    assert done.value.code in (0, None)
    model = polyhead.load(out)
    assert model.world_size_ == 2 and model.streamed_
    assert model.evaluate(table[["a", "b", "colour"]], table[["amount", "kind", "level"]]).loc["amount", "r2"] > 0
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temporary left behind


@pytest.mark.slow
def test_a_rank_that_dies_stops_the_others_with_one_line() -> None:
    with pytest.raises(PolyheadError, match="rank 1 died .exit code 3.; the other ranks were stopped"):
        distributed.launch(2, _rank_one_dies)
    with pytest.raises(PolyheadError, match="rank . failed: bad things"):
        distributed.launch(2, _fails_everywhere)


def test_the_cli_streams_parquet_and_refuses_streaming_for_other_families(
        folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from polyhead.cli import main

    args = ["fit", str(folder), "-t", "amount", "-t", "kind:binary", "-p", "hidden=16",
            "-p", "max_epochs=3", "-p", "preset=fast", "--json"]
    with pytest.raises(SystemExit) as done:
        main([*args, "-o", str(tmp_path / "m")])
    assert done.value.code in (0, None)
    report = json.loads(capsys.readouterr().out)
    assert report["streamed"] is True and report["rows"] == 600 and report["world_size"] == 1
    with pytest.raises(SystemExit) as done:
        main(["fit", str(folder), "-t", "amount", "-m", "forest", "--stream", "-o", str(tmp_path / "f")])
    assert done.value.code == 2
    assert "--stream trains the net family" in capsys.readouterr().err
    pytest.importorskip("xgboost")
    with pytest.raises(SystemExit) as done:  # boosting streams with backend=xgboost
        main(["fit", str(folder), "-t", "amount", "-m", "gbm", "-p", "backend=xgboost", "-p",
              "n_estimators=20", "--drop", "kind,level,t1,t2,t3", "-o", str(tmp_path / "g"), "--json"])
    assert done.value.code in (0, None)
    assert json.loads(capsys.readouterr().out)["streamed"] is True
    assert polyhead.load(tmp_path / "g").predict(pd.read_parquet(folder / "part-0.parquet")).shape[0] == 200
    # forest reads a Parquet file into memory as before
    with pytest.raises(SystemExit) as done:
        main(["fit", str(folder / "part-0.parquet"), "-t", "amount", "-m", "forest", "-o",
              str(tmp_path / "f"), "--json"])
    assert done.value.code in (0, None)


def test_the_encoded_cache_is_used_and_removed(folder: Path, tmp_path: Path, table: pd.DataFrame) -> None:
    from polyhead.streaming import EncodedCache

    cache = EncodedCache(str(tmp_path))
    rows = [np.arange(10, dtype=np.float32).reshape(5, 2), np.arange(5, dtype=np.int64)]
    first = list(cache.chunks(7, iter([rows, rows]), rows_per_chunk=4))
    assert len(first) == 2 and cache.rows[7] == 10
    again = list(cache.chunks(7, iter([]), rows_per_chunk=4))  # read back, not produced
    assert [len(a[0]) for a in again] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([a[0] for a in again]), np.concatenate([rows[0], rows[0]]))
    assert again[0][0].dtype == np.float32 and again[0][1].dtype == np.int64
    cut = cache.chunks(8, iter([rows, rows]), rows_per_chunk=4)
    next(cut)
    cut.close()  # read cut short: not complete, produced again next time
    assert 8 not in cache.done
    cache.close()
    assert not Path(cache.path).exists()
    place = tmp_path / "cache"
    place.mkdir()
    kw = {**FAST, "max_epochs": 3}
    cached = polyhead.MultiTaskNet(TASKS, **kw).fit(ParquetSource(folder, cache_dir=str(place)))
    plain = polyhead.MultiTaskNet(TASKS, **kw).fit(ParquetSource(folder, cache=False))
    assert list(place.iterdir()) == []  # removed after the fit
    X, y = table[["a", "b", "colour"]], table.drop(columns=["a", "b", "colour"])
    assert abs(cached.score(X, y) - plain.score(X, y)) < 0.2  # same data, same training


def test_boosting_streams_through_xgboost_external_memory(folder: Path, table: pd.DataFrame,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("xgboost")
    X, y = table[["a", "b", "colour"]], table.drop(columns=["a", "b", "colour"])
    reads = []
    original = ParquetSource.batches
    monkeypatch.setattr(ParquetSource, "batches", lambda self, *a, **k: (reads.append(1), original(self, *a, **k))[1])
    gbm = polyhead.MultiTaskGBM(TASKS, backend="xgboost", n_estimators=60, random_state=0)
    source = ParquetSource(folder, sample_rows=100)
    gbm.fit(source)
    assert gbm.streamed_ and gbm.rows_seen_ == 600
    # the statistics pass, then every piece read and encoded once for all 6 boosters (XGBoost
    # reads each booster's rows more than once: from the source, that was >= 12 reads a piece)
    assert len(gbm.slots_) == 6 and len(reads) <= 2 * len(source.pieces)
    scores = gbm.evaluate(X, y)
    assert scores.loc["amount", "r2"] > 0.5 and scores.loc["kind", "accuracy"] > 0.7
    assert scores.loc["tags", "hamming_loss"] < 0.2  # a multilabel task: one booster per label
    proba = gbm.predict_proba(X.head(5))
    np.testing.assert_allclose(proba["level"].sum(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(PolyheadError, match="backend='hist'.*cannot train from a stream"):
        polyhead.MultiTaskGBM(TASKS).fit(ParquetSource(folder))


def test_boosting_refit_streams_every_row_again(folder: Path, table: pd.DataFrame) -> None:
    """early_stopping="refit" from a stream: the held-out rows choose the rounds, then each
    booster trains again on the training and the held-out rows together."""
    pytest.importorskip("xgboost")
    X, y = table[["a", "b", "colour"]], table.drop(columns=["a", "b", "colour"])
    kw = dict(backend="xgboost", n_estimators=200, learning_rate=0.3, n_iter_no_change=20,
              max_features=1.0, random_state=0)
    stopped = polyhead.MultiTaskGBM(TASKS, early_stopping=True, **kw).fit(ParquetSource(folder, sample_rows=100))
    refit = polyhead.MultiTaskGBM(TASKS, early_stopping="refit", **kw).fit(ParquetSource(folder, sample_rows=100))
    for (_, a), (_, b) in zip(stopped.units_, refit.units_, strict=True):
        best = a.booster.num_boosted_rounds()
        assert best < 200 and b.booster.num_boosted_rounds() >= best  # more rows, as many rounds or more
    assert not np.allclose(stopped.predict(X)["amount"], refit.predict(X)["amount"])
    assert refit.evaluate(X, y).loc["amount", "r2"] > 0.5
    # out of core, "cv" is "refit": one held-out split (k passes over the source per output
    # would multiply the reading)
    cv = polyhead.MultiTaskGBM(TASKS, early_stopping="cv", **kw).fit(ParquetSource(folder, sample_rows=100))
    pd.testing.assert_frame_equal(cv.predict(X), refit.predict(X))


@pytest.mark.slow
def test_predict_works_on_several_files_in_parallel(folder: Path, tmp_path: Path, table: pd.DataFrame,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from polyhead.cli import main

    X, y = table[["a", "b", "colour"]], table[["amount", "kind"]]
    model = polyhead.MultiTaskNet({"amount": "regression", "kind": "binary"}, **FAST).fit(X, y)
    model.save(tmp_path / "m")
    out = tmp_path / "preds"
    with pytest.raises(SystemExit) as done:
        main(["predict", str(tmp_path / "m"), str(folder), "-o", str(out), "--nproc", "2", "--json"])
    assert done.value.code in (0, None)
    report = json.loads(capsys.readouterr().out)
    assert report["rows"] == 600 and len(report["files"]) == 3
    for i in range(3):
        got = pd.read_parquet(out / f"part-{i}.parquet")
        part = pd.read_parquet(folder / f"part-{i}.parquet")
        pd.testing.assert_frame_equal(got, model.predict_frame(part), check_dtype=False)
    # again without --force: every existing output is refused before any work
    with pytest.raises(SystemExit) as done:
        main(["predict", str(tmp_path / "m"), str(folder), "-o", str(out)])
    assert done.value.code == 2 and "--force" in capsys.readouterr().err
    with pytest.raises(SystemExit) as done:
        main(["predict", str(tmp_path / "m"), str(folder / "part-0.parquet"), "-o",
              str(tmp_path / "one.csv"), "--nproc", "2"])
    assert done.value.code == 2 and "several files" in capsys.readouterr().err


@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="needs a CUDA GPU")
def test_a_streamed_fit_on_a_gpu(folder: Path, table: pd.DataFrame) -> None:
    net = polyhead.MultiTaskNet(TASKS, **{**FAST, "max_epochs": 3, "device": "cuda"})
    net.fit(ParquetSource(folder))
    assert net.predict(table[["a", "b", "colour"]]).shape[0] == 600


@pytest.mark.slow
def test_torchrun_runs_the_command_line_on_each_rank(folder: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    out = tmp_path / "m"
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "polyhead", "fit", str(folder), "-o", str(out), "-t", "amount", "-t", "kind:binary",
         "--drop", "level,t1,t2,t3", "-p", "hidden=16", "-p", "max_epochs=2", "-p", "preset=fast",
         "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    reports = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(reports) == 1 and json.loads(reports[0])["world_size"] == 2  # rank 0 reports
    assert polyhead.load(out).world_size_ == 2


def test_a_streamed_fit_takes_the_scripted_epoch_and_matches_autograd(folder: Path, table: pd.DataFrame,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from polyhead.nn import fast_epoch

    tasks = {"amount": "regression", "kind": "binary", "level": "multiclass"}
    X = table[["a", "b", "colour"]]
    kw = {**FAST, "max_epochs": 5, "n_ensemble": 2}
    calls = []
    run = fast_epoch.FastEpoch.run
    monkeypatch.setattr(fast_epoch.FastEpoch, "run", lambda self, *a: calls.append(1) or run(self, *a))
    fast = polyhead.MultiTaskNet(tasks, **kw).fit(ParquetSource(folder, features=["a", "b", "colour"], buffer_rows=128, cache=False))
    assert calls and all(p.grad is None for p in fast.module_.parameters())
    monkeypatch.setattr(fast_epoch, "ENABLED", False)
    slow = polyhead.MultiTaskNet(tasks, **kw).fit(ParquetSource(folder, features=["a", "b", "colour"], buffer_rows=128, cache=False))
    np.testing.assert_allclose(fast.predict_frame(X, proba=True).drop(columns="kind").to_numpy(float),
                               slow.predict_frame(X, proba=True).drop(columns="kind").to_numpy(float),
                               rtol=1e-3, atol=1e-4)


def test_boosting_without_disk_room_is_one_line(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("xgboost")
    import errno

    def full(*a: object, **k: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    with pytest.raises(PolyheadError, match=r"cannot write the encoded rows.*No space left.*cache_dir"):
        polyhead.MultiTaskGBM(TASKS, backend="xgboost", n_estimators=5).fit(ParquetSource(folder))


def test_streaming_refuses_the_auto_embedding_in_one_line(folder: Path) -> None:
    net = polyhead.MultiTaskNet(TASKS, **{**FAST, "numeric_embedding": "auto"})
    with pytest.raises(polyhead.PolyheadError, match="numeric_embedding='auto' is not available when streaming"):
        net.fit(ParquetSource(folder))


def test_streaming_with_auto_best_epochs_predicts_every_task_from_the_joint_epoch(
        folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """best_epoch="auto" has no paired check over streamed chunks: every task takes the joint
    epoch, and no per-task snapshot is taken while training, let alone kept (per_task, on the
    same stream, keeps its own epochs)."""
    from polyhead.models import net as net_module

    tracked = []

    class Recording(net_module._BestEpochs):
        def __init__(self, names: list[str], per_task: bool) -> None:
            tracked.append(per_task)
            super().__init__(names, per_task)

    monkeypatch.setattr(net_module, "_BestEpochs", Recording)
    kw = {**FAST, "max_epochs": 12}
    auto = polyhead.MultiTaskNet(TASKS, best_epoch="auto", **kw).fit(ParquetSource(folder, buffer_rows=64))
    assert set(auto.task_best_epochs_.values()) == {auto.best_epoch_} and not auto._snapshots
    assert tracked == [False]
    per_task = polyhead.MultiTaskNet(TASKS, best_epoch="per_task", **kw).fit(ParquetSource(folder, buffer_rows=64))
    assert per_task.n_iter_ == auto.n_iter_ and per_task.best_epoch_ == auto.best_epoch_


def test_distributed_training_asks_each_torch_version_for_unsynced_buffers_by_its_own_name():
    """torch before 2.13 has no forward_sync_buffers (passing it broke every distributed fit
    there); it has broadcast_buffers."""
    from polyhead.models.net_streaming import _no_buffer_sync

    class Before213:
        def __init__(self, module, device_ids=None, broadcast_buffers=True):
            pass

    class Since213:
        def __init__(self, module, broadcast_buffers=None, forward_sync_buffers=None):
            pass

    assert _no_buffer_sync(Before213) == {"broadcast_buffers": False}
    assert _no_buffer_sync(Since213) == {"forward_sync_buffers": False}
    Before213(None, **_no_buffer_sync(Before213))
