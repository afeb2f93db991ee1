"""benchmarks/quality.py's own logic (specs, report), on synthetic results: no fits, no data."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def quality():
    sys.path.insert(0, str(BENCH))
    try:
        import quality as module
    finally:
        sys.path.remove(str(BENCH))
    return module


def _rows(model: str, errors: dict[str, float], seconds: float, device: str | None = None) -> list[dict]:
    rows = []
    for name, error in errors.items():
        row = {"set": name, "model": model, "split": 0, "fit_s": seconds, "error": error}
        if device is not None:
            row["device"] = device
        rows.append(row)
    return rows


def test_report_ranks_ratios_and_leaves_gpu_fit_times_out(quality):
    results = pd.DataFrame(
        _rows("lightgbm", {"a": 0.5, "b": 0.2}, 1.0)
        + _rows("net", {"a": 0.25, "b": 0.4}, 4.0, "cpu")
        + _rows("tabm", {"a": 0.4, "b": 0.1}, 0.5, "cuda"))
    table = quality.report(results, ["a", "b"], ["net", "tabm", "lightgbm"], "lightgbm")
    lines = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
             for line in table.splitlines()[2:]}
    assert lines["a"] == ["**0.2500**", "0.4000", "0.5000"]
    assert lines["**mean rank**"] == ["2.00", "1.50", "2.50"]
    assert lines["error / lightgbm (geo. mean)"][0] == "1.000"  # sqrt(0.5 * 2)
    assert lines["sets better than lightgbm"] == ["1/2", "2/2", "0/2"]
    # the GPU-fitted reference has no fit-time ratio; the CPU ones do
    assert lines["fit time / lightgbm (geo. mean)"] == ["4.00", "GPU", "1.00"]


def test_report_reads_results_cached_before_the_device_field(quality):
    results = pd.DataFrame(_rows("lightgbm", {"a": 0.5}, 2.0) + _rows("net", {"a": 0.4}, 1.0))
    table = quality.report(results, ["a"], ["net", "lightgbm"], "lightgbm")
    assert "| fit time / lightgbm (geo. mean) | 0.50 | 1.00 |" in table


def test_specs_parse_tuples_and_the_cache_key_follows_the_defaults_version(quality, tmp_path):
    assert quality._split_args("hidden=128,128,lr=0.01") == ["hidden=128,128", "lr=0.01"]
    net = quality.make_model("net:head_hidden=32,hidden=16", seed=3)
    assert net.head_hidden == (32,) and net.hidden == (16,) and net.random_state == 3
    a = quality.cache_path(tmp_path, "enb", "tabm", 0)
    assert a.parent == tmp_path / "cache" / "enb" and a.name.startswith("tabm-")
    assert a != quality.cache_path(tmp_path, "enb", "tabm", 1)
    assert a != quality.cache_path(tmp_path, "enb", "realmlp", 0)


def test_a_run_with_nothing_to_report_says_so_instead_of_failing(quality, tmp_path, monkeypatch, capsys):
    """--no-fit on an empty cache (or sets that are not there) ends with one line, not a
    traceback from inside pandas."""
    monkeypatch.setattr(sys, "argv", ["quality.py", "--no-fit", "--models", "lightgbm",
                                      "--sets", "no_such_set", "--out", str(tmp_path)])
    monkeypatch.setattr(quality.os, "environ", {**quality.os.environ})  # main() sets variables
    quality.main()
    assert capsys.readouterr().out.strip().endswith("no results to report")
    assert not (tmp_path / "quality.md").exists()


def test_archived_means_are_reported_without_a_fit_time(quality, tmp_path, monkeypatch):
    """A per-set mean kept in archived.json is one row without a fit time, on the device it was
    measured on, and is ranked like a cached result."""
    import json

    (tmp_path / "archived.json").write_text(json.dumps({
        "devices": {"tabm": "cuda"},
        "results": [{"set": "a", "model": "tabm", "error": 0.3},
                    {"set": "b", "model": "tabm", "error": 0.9}]}))
    archived = quality._archived(tmp_path)
    assert archived["a", "tabm"]["device"] == "cuda" and archived["a", "tabm"]["split"] == "archived"
    results = pd.DataFrame([*_rows("lightgbm", {"a": 0.5, "b": 0.2}, 1.0),
                            archived["a", "tabm"], archived["b", "tabm"]])
    table = quality.report(results, ["a", "b"], ["tabm", "lightgbm"], "lightgbm")
    assert "| a | **0.3000** | 0.5000 |" in table
    assert "| fit time / lightgbm (geo. mean) | GPU | 1.00 |" in table
    assert quality._archived(tmp_path / "nowhere") == {}


def test_none_is_a_choice_where_a_parameter_takes_it(quality):
    """``numeric_embedding=none`` asks for no embedding (not the preset's choice), while a
    parameter without a "none" option still reads it as None."""
    assert quality.make_model("net:numeric_embedding=none", seed=0).numeric_embedding == "none"
    assert quality.make_model("net:embed_above=none", seed=0).embed_above is None


def test_results_are_written_whole_and_leave_no_temporary(quality, tmp_path):
    target = tmp_path / "cache" / "enb" / "net-0.json"
    quality.write_atomic(target, "first")
    quality.write_atomic(target, "second")
    assert target.read_text() == "second"
    assert [p.name for p in target.parent.iterdir()] == ["net-0.json"]


def test_validation_names_the_sets_no_default_was_chosen_on(quality):
    import datasets

    names = quality.set_names("validation")
    assert names == list(datasets.VALIDATION) and len(names) == 9
    assert not set(names) & set(quality.DEFAULT_SETS)  # none of them tuned on
    assert quality.set_names("enb, validation") == ["enb", *names]


@pytest.mark.parametrize("name", ["sf1", "osales", "genbase", "foodtruck", "medical"])
def test_validation_sets_load_with_their_splits(quality, name):
    import datasets

    data = datasets.load(name)
    if data is None:
        pytest.skip(f"{name} is not in ../shared/data")
    assert len(data.X) == len(data.y) and data.splits
    for train, test in data.splits:
        assert not set(train) & set(test) and max(train.max(), test.max()) < len(data.X)
    targets = {c for t in data.tasks for c in t.source_columns}
    assert targets == set(data.y.columns) and not targets & set(data.X.columns)
    assert "protein" not in data.X.columns  # genbase's identifier is not a feature
