"""`polyhead fit / predict / evaluate / info` on files, and every bad input the CLI must name."""

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import cli, make_mixed

from polyhead.cli import main

FAST = ["-p", "hidden=16", "-p", "max_epochs=5"]




@pytest.fixture
def table(tmp_path):
    X, y = make_mixed(n=200, missing=0.1)
    frame = pd.concat([X, y], axis=1)
    frame.insert(0, "id", np.arange(1000, 1200))
    path = tmp_path / "train.csv"
    frame.to_csv(path, index=False)
    return frame, path


@pytest.fixture
def model(tmp_path, table, capsys):
    _, path = table
    code, out, err = cli(capsys, "fit", path, "-t", "amount:regression", "-t", "kind",
                         "-t", "level:multiclass", "-t", "tags:multilabel=t1,t2,t3",
                         "--drop", "id", *FAST, "-o", tmp_path / "model", "--json")
    assert code == 0, err
    return tmp_path / "model", json.loads(out)


def test_fit_json_summary(model):
    path, summary = model
    assert (path / "manifest.json").exists() and (path / "weights.safetensors").exists()
    assert [t["name"] for t in summary["tasks"]] == ["amount", "kind", "level", "tags"]
    assert summary["tasks"][1]["kind"] == "binary"            # inferred
    assert set(summary["metrics"]) == {"amount", "kind", "level", "tags"}
    assert summary["evaluated_on"].startswith("validation split (20 rows")


def test_fit_prints_tasks_and_metrics(tmp_path, table, capsys):
    _, path = table
    code, out, _ = cli(capsys, "fit", path, "-t", "amount", "--drop", "id", *FAST,
                       "-o", tmp_path / "m")
    assert code == 0
    assert "Tasks (200 rows, 8 features)" in out and "regression" in out
    assert "Metrics on the validation split" in out and "saved to" in out


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_predict_keeps_order_and_id(model, table, tmp_path, capsys, suffix):
    path, _ = model
    frame, data = table
    out_path = tmp_path / f"preds{suffix}"
    code, _, err = cli(capsys, "predict", path, data, "-o", out_path, "--proba", "--id", "id",
                       "--batch-size", "64")
    assert code == 0, err
    preds = pd.read_csv(out_path) if suffix == ".csv" else pd.read_parquet(out_path)
    assert len(preds) == len(frame)
    assert preds["id"].tolist() == frame["id"].tolist()
    assert list(preds.columns[:7]) == ["id", "amount", "kind", "level", "t1", "t2", "t3"]
    assert {"kind:no", "kind:yes", "level:0", "level:2", "tags:t1"} <= set(preds.columns)
    np.testing.assert_allclose(preds[["kind:no", "kind:yes"]].sum(axis=1), 1, rtol=1e-6)


def test_predict_matches_python_api(model, table, tmp_path, capsys):
    import polyhead

    path, _ = model
    frame, data = table
    cli(capsys, "predict", path, data, "-o", tmp_path / "p.parquet")
    got = pd.read_parquet(tmp_path / "p.parquet")
    want = polyhead.load(path).predict_frame(frame)
    np.testing.assert_allclose(got["amount"], want["amount"])
    assert got["kind"].tolist() == want["kind"].tolist()


def test_compressed_and_other_delimiters(model, table, tmp_path, capsys):
    path, _ = model
    frame, _ = table
    gz = tmp_path / "rows.csv.gz"
    with gzip.open(gz, "wt") as fh:
        frame.to_csv(fh, index=False, sep=";")
    jsonl = tmp_path / "rows.jsonl"
    frame.to_json(jsonl, orient="records", lines=True)
    import pyarrow as pa

    zst = tmp_path / "rows.tsv.zst"
    with pa.CompressedOutputStream(str(zst), "zstd") as out:
        out.write(frame.to_csv(index=False, sep="\t").encode())
    for source in (gz, jsonl, zst):
        code, _, err = cli(capsys, "predict", path, source, "-o", tmp_path / "o.csv", "--force")
        assert code == 0, (source, err)
        assert len(pd.read_csv(tmp_path / "o.csv")) == len(frame)


def test_evaluate_and_info(model, table, capsys):
    path, _ = model
    _, data = table
    code, out, _ = cli(capsys, "evaluate", path, data, "--json")
    assert code == 0
    metrics = json.loads(out)["metrics"]
    assert metrics["kind"]["n"] == 200 - int(pd.read_csv(data)["kind"].isna().sum())
    code, out, _ = cli(capsys, "info", path, "--json")
    info = json.loads(out)
    assert info["tasks"][2]["classes"] == [0, 1, 2]
    assert info["architecture"]["heads"] == {"amount": 1, "kind": 1, "level": 3, "tags": 3}
    assert info["training"]["n_iter"] == 5
    code, out, _ = cli(capsys, "info", path)
    assert code == 0 and "Architecture" in out and "colour" in out


def test_fit_refuses_to_overwrite_without_force(model, table, tmp_path, capsys):
    path, _ = model
    _, data = table
    before = (path / "weights.safetensors").read_bytes()
    code, _, err = cli(capsys, "fit", data, "-t", "amount", *FAST, "-o", path)
    assert code == 2 and "already exists; pass --force" in err
    assert (path / "weights.safetensors").read_bytes() == before
    code, _, err = cli(capsys, "fit", data, "-t", "amount", "--drop", "id", *FAST, "-o", path, "--force")
    assert code == 0, err


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("case", [
    "missing_file", "empty_file", "unknown_extension", "target_not_in_file", "unknown_kind",
    "no_target", "text_in_regression_target", "output_folder_missing", "bad_param",
    "unknown_model",
])
def test_fit_bad_input_is_one_clear_line(case, table, tmp_path, capsys):
    _, data = table
    args = {
        "missing_file": ([tmp_path / "nope.csv", "-t", "amount"], "nope.csv: no such file"),
        "empty_file": ([_write(tmp_path, "e.csv", ""), "-t", "amount"], "e.csv is empty"),
        "unknown_extension": ([_write(tmp_path, "d.xlsx", "a"), "-t", "a"], "unknown file type"),
        "target_not_in_file": ([data, "-t", "age"], "target 'age': column 'age' is not in"),
        "unknown_kind": ([data, "-t", "amount:ordinall"], "unknown kind 'ordinall'"),
        "no_target": ([data], "no targets: give --target"),
        "text_in_regression_target": (
            [_write(tmp_path, "t.csv", "x,y\n1,2\n2,abc\n3,4\n"), "-t", "y:regression"],
            "non-numeric value(s), e.g. 'abc' at row 1"),
        "output_folder_missing": ([data, "-t", "amount", "-o", tmp_path / "no" / "m"],
                                  "folder " + str(tmp_path / "no") + " does not exist"),
        "bad_param": ([data, "-t", "amount", "-p", "hiden=3"], "'hiden' is not a parameter"),
        "unknown_model": ([data, "-t", "amount", "-m", "svm"], "unknown --model 'svm'"),
    }[case]
    argv, message = args
    if "-o" not in argv:
        argv = [*argv, "-o", tmp_path / "model"]
    code, _, err = cli(capsys, "fit", *argv)
    assert code == 2
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "model").exists()


def test_predict_bad_input(model, table, tmp_path, capsys):
    path, _ = model
    frame, data = table
    no_colour = tmp_path / "no_colour.csv"
    frame.drop(columns="colour").to_csv(no_colour, index=False)
    cases = [
        ([path, no_colour, "-o", tmp_path / "o.csv"], "missing feature column 'colour'"),
        ([tmp_path, data, "-o", tmp_path / "o.csv"], "is not a polyhead model directory"),
        ([path, data, "-o", tmp_path / "no" / "o.csv"], "does not exist"),
        ([path, data, "-o", tmp_path / "o.xlsx"], "output must end in .csv or .parquet"),
        ([path, data, "-o", tmp_path / "o.csv", "--id", "nope"], "--id column 'nope'"),
    ]
    for argv, message in cases:
        code, _, err = cli(capsys, "predict", *argv)
        assert code == 2 and message in err, (argv, err)
        assert not (tmp_path / "o.csv").exists()            # nothing half-written


def test_newer_model_format_is_refused(model, table, capsys):
    path, _ = model
    _, data = table
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = 99
    (path / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = cli(capsys, "predict", path, data, "-o", path.parent / "o.csv")
    assert code == 2 and "written with model format 99" in err and "upgrade polyhead" in err


def test_evaluate_needs_targets(model, table, tmp_path, capsys):
    path, _ = model
    frame, _ = table
    features_only = tmp_path / "f.parquet"
    frame.drop(columns=["amount"]).to_parquet(features_only)
    code, _, err = cli(capsys, "evaluate", path, features_only)
    assert code == 2 and "target column 'amount' is not in" in err


def _fit_when_reading_raises(monkeypatch, capsys, table, tmp_path, error):
    """``polyhead fit`` with the table reader raising ``error``: exit code, stderr, data."""
    import polyhead.io

    def fail(*a, **k):
        raise error

    monkeypatch.setattr(polyhead.io, "read_table", fail)
    _, data = table
    code, _, err = cli(capsys, "fit", data, "-t", "amount", "-o", tmp_path / "m")
    return code, err, data


def test_internal_error_exit_code_and_debug(monkeypatch, table, tmp_path, capsys):
    code, err, data = _fit_when_reading_raises(monkeypatch, capsys, table, tmp_path, RuntimeError("kaput"))
    assert code == 1 and "internal error: RuntimeError: kaput" in err and "--debug" in err
    with pytest.raises(RuntimeError):
        main(["fit", str(data), "-t", "amount", "-o", str(tmp_path / "m"), "--debug"])


def test_a_missing_optional_package_is_a_usage_error(monkeypatch, table, tmp_path, capsys):
    code, err, _ = _fit_when_reading_raises(
        monkeypatch, capsys, table, tmp_path,
        ImportError("reading this needs pyarrow: pip install 'polyhead[parquet]'"))
    assert code == 2 and err.startswith("error: ") and "pip install" in err


def test_interrupted_write_leaves_nothing(tmp_path):
    from polyhead.io import TableWriter

    target = tmp_path / "out.csv"
    with pytest.raises(KeyboardInterrupt), TableWriter(target) as writer:
        writer.write(pd.DataFrame({"a": [1, 2]}))
        raise KeyboardInterrupt
    assert list(Path(tmp_path).iterdir()) == []


@pytest.mark.parametrize("family", ["forest", "gbm", "linear"])
def test_fit_other_families(family, table, tmp_path, capsys):
    _, data = table
    code, out, err = cli(capsys, "fit", data, "-t", "amount", "-t", "kind", "--drop", "id",
                         "-m", family, "-o", tmp_path / "m", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["evaluated_on"] == "validation split (20 rows)"
    code, _, err = cli(capsys, "predict", tmp_path / "m", data, "-o", tmp_path / "p.csv")
    assert code == 0, err
    assert json.loads((tmp_path / "m" / "manifest.json").read_text())["estimator"].lower().endswith(family)


def test_composite_models_work_from_the_shell(table, tmp_path, capsys):
    """A Separate or TaskChain saved from Python predicts, evaluates and describes itself."""
    from polyhead import MultiTaskLinear, Separate, TaskChain

    frame, data = table
    X, y = frame.drop(columns=["amount", "kind", "level", "t1", "t2", "t3"]), frame[["amount", "kind"]]
    for i, model in enumerate([Separate(MultiTaskLinear(), tasks={"amount": "regression", "kind": "binary"}),
                               TaskChain(MultiTaskLinear(), tasks={"amount": "regression", "kind": "binary"},
                                         cv=2, random_state=0)]):
        model.fit(X, y).save(tmp_path / f"m{i}")
        for args in (["predict", tmp_path / f"m{i}", data, "-o", tmp_path / "p.csv", "--force"],
                     ["evaluate", tmp_path / f"m{i}", data, "--json"],
                     ["info", tmp_path / f"m{i}", "--json"]):
            code, out, err = cli(capsys, *args)
            assert code == 0, (model, args, err)
        assert "colour" in [f["name"] for f in json.loads(out)["features"]]


def test_param_none_is_a_choice_where_the_parameter_offers_it():
    """``--param numeric_embedding=none`` asks for no embedding, not for the preset's choice
    (which would train twice); ``embed_above=none`` and ``n_bins=None`` still mean None."""
    from polyhead import MultiTaskNet
    from polyhead.cli import _parse_params

    params = _parse_params(["numeric_embedding=none", "embed_above=none", "n_bins=None"], MultiTaskNet)
    assert params == {"numeric_embedding": "none", "embed_above": None, "n_bins": None}


def test_target_prefix_makes_a_block_of_label_columns_one_multilabel_task(tmp_path, capsys):
    import polyhead
    from polyhead.tasks import LABEL_BLOCK

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=80), "z": rng.normal(size=80)})
    for i in range(LABEL_BLOCK):
        frame[f"tag_{i}"] = (frame.x * (i - 3) + rng.normal(size=80) > 0).astype(int)
    frame["tag_0"] = 0  # never positive here: still one of the labels
    frame.to_csv(tmp_path / "tags.csv", index=False)
    code, _, err = cli(capsys, "fit", tmp_path / "tags.csv", "--target-prefix", "tag_", "-m", "forest",
                       "-o", tmp_path / "tags")
    assert code == 0, err
    tasks = polyhead.load(tmp_path / "tags").tasks_
    assert list(tasks) == ["tag"] and tasks["tag"].kind == "multilabel"
    assert list(tasks["tag"].columns) == [f"tag_{i}" for i in range(LABEL_BLOCK)]
    # a --target with the prefix's name: the block takes a free one
    code, _, err = cli(capsys, "fit", tmp_path / "tags.csv", "--target-prefix", "tag_", "-m", "forest",
                       "-t", "tag:regression=z", "-o", tmp_path / "named")
    assert code == 0, err
    assert list(polyhead.load(tmp_path / "named").tasks_) == ["tag", f"tag_{LABEL_BLOCK}"]  # tag_0.. are columns
    # a condition on one of them keeps every column its own task
    code, _, err = cli(capsys, "fit", tmp_path / "tags.csv", "--target-prefix", "tag_", "-m", "forest",
                       "-t", "z", "--given", "z:1", "-o", tmp_path / "given")
    assert code == 0, err
    assert len(polyhead.load(tmp_path / "given").tasks_) == LABEL_BLOCK + 1
