"""Safe by default: no command destroys a user's files, and no input kills the process.

One test (or more) per item of the safety audit; each reproduces what a user did.
"""

from __future__ import annotations

import json
import os
import stat
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import FAST, MIXED_TASKS, cli, make_mixed

import polyhead
from polyhead import MultiTaskNet, PolyheadError, Task, TaskError
from polyhead.io import OutputPathError


@pytest.fixture
def data_csv(tmp_path):
    X, y = make_mixed(120)
    path = tmp_path / "data.csv"
    pd.concat([X, y[["amount", "kind"]]], axis=1).to_csv(path, index=False)
    return path


@pytest.fixture
def fitted(tmp_path, data_csv, capsys):
    code, _, err = cli(capsys, "fit", data_csv, "-t", "amount", "-t", "kind", "-o",
                       tmp_path / "model", "--param", "max_epochs=3", "--param", "hidden=8")
    assert code == 0, err
    return tmp_path / "model"


def thesis(tmp_path: Path) -> Path:
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "chapter1.tex").write_text("years of work")
    return folder


# -- 1. a directory that is not a model is never replaced --------------------------------------
def test_save_never_replaces_a_directory_that_is_not_a_model(tmp_path):
    X, y = make_mixed(60)
    model = MultiTaskNet(tasks=MIXED_TASKS, **FAST).fit(X, y)
    folder = thesis(tmp_path)
    with pytest.raises(OutputPathError, match="not a polyhead model directory.*even with overwrite=True"):
        model.save(folder, overwrite=True)
    assert (folder / "chapter1.tex").read_text() == "years of work"
    file = tmp_path / "notes.txt"
    file.write_text("keep me")
    with pytest.raises(OutputPathError, match="not a polyhead model directory"):
        model.save(file, overwrite=True)
    assert file.read_text() == "keep me"


def test_save_never_replaces_a_model_directory_holding_other_files(tmp_path):
    X, y = make_mixed(60)
    model = MultiTaskNet(tasks=MIXED_TASKS, **FAST).fit(X, y)
    model.save(tmp_path / "m")
    (tmp_path / "m" / "my-notes.md").write_text("notes")
    with pytest.raises(OutputPathError, match="files polyhead did not write \\(my-notes.md\\)"):
        model.save(tmp_path / "m", overwrite=True)
    assert (tmp_path / "m" / "my-notes.md").exists()
    (tmp_path / "m" / "my-notes.md").unlink()
    model.save(tmp_path / "m", overwrite=True)  # a model of ours: replaced
    assert polyhead.load(tmp_path / "m").predict(X).shape == (60, 3)


def test_fit_force_never_replaces_a_users_directory(tmp_path, data_csv, capsys):
    folder = thesis(tmp_path)
    code, _, err = cli(capsys, "fit", data_csv, "-t", "amount", "-o", folder, "--force")
    assert code == 2
    assert "not a polyhead model directory" in err and str(folder) in err
    assert err.count("\n") == 1
    assert (folder / "chapter1.tex").read_text() == "years of work"


def test_fit_force_replaces_its_own_model(fitted, data_csv, capsys):
    code, _, err = cli(capsys, "fit", data_csv, "-t", "amount", "-o", fitted)
    assert code == 2 and "already exists; pass --force" in err
    code, _, err = cli(capsys, "fit", data_csv, "-t", "amount", "-o", fitted, "--force",
                       "--param", "max_epochs=2")
    assert code == 0, err
    assert [t.name for t in polyhead.load(fitted).task_states_] == ["amount"]


# -- 2. outputs never replace inputs, and existing outputs need --force ---------------------------
def test_predict_never_writes_over_its_input(fitted, data_csv, capsys):
    before = data_csv.read_bytes()
    for force in ([], ["--force"]):
        code, _, err = cli(capsys, "predict", fitted, data_csv, "-o", data_csv, *force)
        assert code == 2 and "it is the input" in err
    link = data_csv.parent / "link.csv"
    link.symlink_to(data_csv)
    code, _, err = cli(capsys, "predict", fitted, data_csv, "-o", link, "--force")
    assert code == 2 and "it is the input" in err
    assert data_csv.read_bytes() == before


def test_predict_needs_force_to_replace_an_output(fitted, data_csv, tmp_path, capsys):
    out = tmp_path / "preds.csv"
    out.write_text("old")
    code, _, err = cli(capsys, "predict", fitted, data_csv, "-o", out)
    assert code == 2 and "already exists; pass --force" in err
    assert out.read_text() == "old"
    code, _, err = cli(capsys, "predict", fitted, data_csv, "-o", out, "--force")
    assert code == 0, err
    assert len(pd.read_csv(out)) == 120


def test_compare_never_writes_over_its_input_and_needs_force(data_csv, tmp_path, capsys, monkeypatch):
    import polyhead.evaluation.comparison as comparison

    def no_work(*args, **kwargs):
        raise AssertionError("compare started although its output path is unusable")

    monkeypatch.setattr(comparison, "compare", no_work)
    code, _, err = cli(capsys, "compare", data_csv, "-t", "amount", "-o", data_csv, "--force")
    assert code == 2 and "it is the input" in err
    report = tmp_path / "report.html"
    report.write_text("<html>mine</html>")
    code, _, err = cli(capsys, "compare", data_csv, "-t", "amount", "-o", report)
    assert code == 2 and "already exists; pass --force" in err
    assert report.read_text() == "<html>mine</html>"


def test_to_html_needs_overwrite(tmp_path):
    from polyhead import MultiTaskLinear, compare

    X, y = make_mixed(60)
    result = compare(X, y[["amount"]], tasks={"amount": "regression"},
                     models={"linear": MultiTaskLinear()}, cv=2, repeats=1)
    path = tmp_path / "r.html"
    path.write_text("mine")
    with pytest.raises(OutputPathError, match="overwrite=True"):
        result.to_html(path)
    assert path.read_text() == "mine"


# -- 3. every output path and optional dependency is checked before the work ------------------
@pytest.mark.parametrize("output", ["some_dir/", "some_dir", "missing/report.html", "report.txt"])
def test_compare_checks_its_output_before_fitting(output, data_csv, tmp_path, capsys, monkeypatch):
    import polyhead.evaluation.comparison as comparison

    (tmp_path / "some_dir").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(comparison, "compare", lambda *a, **k: pytest.fail("compare ran"))
    code, _, err = cli(capsys, "compare", data_csv, "-t", "amount", "-o", output)
    assert code == 2, err
    assert err.startswith("error:") and err.count("\n") == 1


def test_compare_checks_for_matplotlib_before_fitting(data_csv, tmp_path, capsys, monkeypatch):
    import importlib.util

    import polyhead.evaluation.comparison as comparison

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else real(name, *a))
    monkeypatch.setattr(comparison, "compare", lambda *a, **k: pytest.fail("compare ran"))
    code, _, err = cli(capsys, "compare", data_csv, "-t", "amount", "-o", tmp_path / "r.html")
    assert code == 2 and "needs matplotlib" in err and "polyhead[plot]" in err


def test_unwritable_folder_is_refused_before_work(fitted, data_csv, tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("root can write anywhere")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code, _, err = cli(capsys, "predict", fitted, data_csv, "-o", locked / "p.csv")
    assert code == 2 and "not writable" in err


# -- 4. files follow the umask ------------------------------------------------------------------------
@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_outputs_follow_the_umask(mask, tmp_path, data_csv, capsys):
    old = os.umask(mask)
    try:
        X, y = make_mixed(60)
        MultiTaskNet(tasks=MIXED_TASKS, **FAST).fit(X, y).save(tmp_path / "m")
        code, _, err = cli(capsys, "predict", tmp_path / "m", data_csv, "-o", tmp_path / "p.csv")
        assert code == 0, err
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)  # noqa: E731
    assert mode(tmp_path / "m") == 0o777 & ~mask
    for name in ("manifest.json", "weights.safetensors"):
        assert mode(tmp_path / "m" / name) == 0o666 & ~mask
    assert mode(tmp_path / "p.csv") == 0o666 & ~mask


# -- 5. high-cardinality categoricals: memory proportional to rows, and a warning ---------------
@pytest.mark.parametrize("family", ["net", "forest", "linear"])
def test_identifier_column_is_capped_and_named_in_a_warning(family):
    n = 5000
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"x": rng.normal(size=n), "customer_id": [f"c{i}" for i in range(n)]})
    y = pd.DataFrame({"amount": X.x * 2 + rng.normal(size=n)})
    model = {"net": MultiTaskNet(max_epochs=2, hidden=(8,)),
             "forest": polyhead.MultiTaskForest(n_estimators=3),
             "linear": polyhead.MultiTaskLinear()}[family]
    with pytest.warns(polyhead.exceptions.PolyheadWarning, match="'customer_id' looks like an identifier"):
        model.fit(X, y)
    assert model.features_.n_outputs_ <= 1 + model.max_categories + 1  # x, kept ids, <other>
    assert np.isfinite(model.predict(X.head(3)).to_numpy(dtype=float)).all()


def test_rare_and_unseen_categories_share_the_other_slot():
    from polyhead.features import FeatureEncoder

    column = ["a"] * 5 + ["b"] * 4 + ["c"] * 3 + ["d", "e"]
    enc = FeatureEncoder(max_categories=2).fit(pd.DataFrame({"s": column}))
    assert enc.feature_names_out_ == ["s=a", "s=b", "s=<other>"]
    out = enc.transform(pd.DataFrame({"s": ["a", "c", "never-seen"]}))
    assert out.tolist() == [[1, 0, 0], [0, 0, 1], [0, 0, 1]]


# -- 6. duplicate column names ---------------------------------------------------------------------
def test_duplicate_columns_are_one_line_errors(tmp_path, capsys):
    X, y = make_mixed(40)
    Xd = X.copy()
    Xd.columns = ["a", "a", "colour"]
    with pytest.raises(PolyheadError, match="X has duplicate column name 'a'"):
        MultiTaskNet(**FAST).fit(Xd, y[["amount"]])
    yd = y[["amount", "kind"]].copy()
    yd.columns = ["t", "t"]
    with pytest.raises(PolyheadError, match="y has duplicate column name 't'"):
        polyhead.MultiTaskForest(n_estimators=2).fit(X, yd)
    csv = tmp_path / "dup.csv"
    csv.write_text("a,a,b\n" + "\n".join(f"{i},{i * 2},{i % 2}" for i in range(30)) + "\n")
    code, _, err = cli(capsys, "fit", csv, "-t", "b", "-o", tmp_path / "m")
    assert code == 2 and "duplicate column name 'a'" in err and err.count("\n") == 1


# -- 7. huge values never become NaN predictions or made-up labels -----------------------------
@pytest.mark.parametrize("family", ["net", "forest"])
def test_values_that_do_not_survive_scaling_are_refused(family):
    X, y = make_mixed(80)
    model = (MultiTaskNet(tasks=MIXED_TASKS, **FAST) if family == "net"
             else polyhead.MultiTaskForest(tasks=MIXED_TASKS, n_estimators=3)).fit(X, y)
    bad = X.head(5).copy()
    bad.loc[3, "a"] = 1e300
    for call in (model.predict, model.predict_proba):
        with pytest.raises(PolyheadError, match="feature column 'a'.*1e\\+300.*row 3"):
            call(bad)
    Xb = X.copy()
    Xb.loc[7, "b"] = -1e300
    with pytest.raises(PolyheadError, match="feature column 'b'.*row 7"):
        type(model)(**model.get_params()).fit(Xb, y)


def test_a_scaled_value_beyond_float32_is_refused():
    X = pd.DataFrame({"a": np.linspace(0, 1e-30, 50)})
    y = pd.DataFrame({"t": np.arange(50.0)})
    model = MultiTaskNet(**FAST).fit(X, y)
    with pytest.raises(PolyheadError, match="does not survive scaling"):
        model.predict(pd.DataFrame({"a": [1e20]}))


def test_a_nan_output_never_becomes_a_label(monkeypatch):
    X, y = make_mixed(60)
    model = MultiTaskNet(tasks=MIXED_TASKS, **FAST).fit(X, y)
    real = model._predict_outputs

    def poisoned(frame):
        out = real(frame)
        out["kind"] = np.full_like(out["kind"], np.nan)
        return out

    monkeypatch.setattr(model, "_predict_outputs", poisoned)
    with pytest.raises(PolyheadError, match="task 'kind'.*not finite"):
        model.predict(X.head(3))
    with pytest.raises(PolyheadError, match="not finite"):
        model.predict_proba(X.head(3))


# -- 9. a target column is never a feature ----------------------------------------------------------
def test_fit_features_refuses_a_target(data_csv, tmp_path, capsys):
    code, _, err = cli(capsys, "fit", data_csv, "-t", "kind", "--features", "a,b,kind",
                       "-o", tmp_path / "m")
    assert code == 2 and "'kind', the target column of task 'kind'" in err


def test_python_fit_refuses_a_target_in_X():
    X, y = make_mixed(60)
    leaky = X.assign(amount=y["amount"])
    with pytest.raises(PolyheadError, match="feature column 'amount' is the target of task 'amount'"):
        MultiTaskNet(tasks={"amount": "regression"}, **FAST).fit(leaky, y[["amount"]])


# -- 12. the smaller ones --------------------------------------------------------------------------
def test_id_naming_a_task_column_is_refused(fitted, data_csv, tmp_path, capsys):
    code, _, err = cli(capsys, "predict", fitted, data_csv, "-o", tmp_path / "p.csv", "--id", "kind")
    assert code == 2 and "--id 'kind' is also a prediction column" in err


def test_cv_larger_than_the_data(tmp_path, capsys):
    csv = tmp_path / "tiny.csv"
    csv.write_text("a,t\n1,2\n2,3\n3,4\n")
    code, _, err = cli(capsys, "compare", csv, "-t", "t", "--cv", "5", "-o", tmp_path / "r.html")
    assert code == 2 and "--cv 5 needs at least 5 rows" in err
    with pytest.raises(ValueError, match="cv=5 folds need at least 5 rows"):
        polyhead.compare(pd.DataFrame({"a": [1.0, 2, 3]}), pd.DataFrame({"t": [1.0, 2, 3]}), cv=5)


def test_parquet_list_and_struct_columns_are_named(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "nested.parquet"
    n = 30
    pq.write_table(pa.table({"a": list(range(n)), "tags": [[i, i + 1] for i in range(n)],
                             "t": [float(i) for i in range(n)]}), path)
    code, _, err = cli(capsys, "fit", path, "-t", "t", "-o", tmp_path / "m")
    assert code == 2 and "column 'tags' holds list values" in err and err.count("\n") == 1
    code, _, err = cli(capsys, "fit", path, "-t", "t", "--drop", "tags", "-o", tmp_path / "m",
                       "--param", "max_epochs=2")
    assert code == 0, err


def test_non_utf8_csv_names_the_byte_and_column_and_offers_encoding(tmp_path, capsys):
    path = tmp_path / "latin.csv"
    rows = [f"{i},{i % 3},{'café' if i == 7 else 'tea'}" for i in range(40)]
    path.write_bytes(("x,t,drink\n" + "\n".join(rows) + "\n").encode("latin-1"))
    code, _, err = cli(capsys, "fit", path, "-t", "t", "-o", tmp_path / "m")
    assert code == 2
    assert "column 'drink', line 9 (data row 7)" in err and "0xe9" in err and "--encoding" in err
    code, _, err = cli(capsys, "fit", path, "-t", "t", "-o", tmp_path / "m", "--encoding",
                       "latin-1", "--param", "max_epochs=2")
    assert code == 0, err
    assert "café" in polyhead.load(tmp_path / "m").feature_encoder().columns_[1]["categories"]


def test_cuda_without_cuda_is_one_line():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    X, y = make_mixed(40)
    with pytest.raises(PolyheadError, match="device='cuda', but CUDA is not available"):
        MultiTaskNet(device="cuda", **FAST).fit(X, y[["amount"]])


def test_multilabel_without_columns_and_all_zero_weights():
    X, y = make_mixed(40)
    with pytest.raises(TaskError, match="needs at least one label column"):
        MultiTaskNet(tasks=[Task("tags", kind="multilabel", columns=[])], **FAST).fit(X, y)
    with pytest.raises(TaskError, match="every task has weight 0"):
        MultiTaskNet(tasks=[Task("amount", weight=0), Task("kind", weight=0.0)], **FAST).fit(X, y)


def test_drop_of_a_missing_column(data_csv, tmp_path, capsys):
    code, _, err = cli(capsys, "fit", data_csv, "-t", "amount", "--drop", "nope", "-o", tmp_path / "m")
    assert code == 2 and "--drop column 'nope' is not in" in err


def test_json_output_never_holds_nan(fitted, tmp_path, capsys):
    # a one-class binary column in the evaluation file: ROC AUC is undefined (NaN)
    X, y = make_mixed(30)
    frame = pd.concat([X, y[["amount"]]], axis=1).assign(kind="yes")
    path = tmp_path / "eval.csv"
    frame.to_csv(path, index=False)
    code, out, err = cli(capsys, "evaluate", fitted, path, "--json")
    assert code == 0, err

    def refuse(token):
        raise AssertionError(f"{token} in JSON output")

    parsed = json.loads(out, parse_constant=refuse)
    assert parsed["metrics"]["kind"]["roc_auc"] is None
    code, out, _ = cli(capsys, "info", fitted, "--json")
    json.loads(out, parse_constant=refuse)


def test_fuzzed_frames_give_a_model_or_one_clear_error():
    """Any table of random dtypes, names and values: a fitted model with finite predictions,
    or a PolyheadError (never a raw AttributeError, KeyError, IndexError from pandas/torch)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    values = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64),
                       st.integers(-10**6, 10**6), st.text(max_size=3), st.none(),
                       st.booleans())
    names = st.sampled_from(["a", "b", "a", "c", "1", "_x", "model_config", ""])

    @given(st.lists(names, min_size=1, max_size=4), st.lists(values, min_size=8, max_size=40),
           st.lists(values, min_size=8, max_size=40))
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    def run(columns, feature_values, target_values):
        n = min(len(feature_values), len(target_values))
        X = pd.DataFrame({i: feature_values[:n] for i in range(len(columns))})
        X.columns = columns
        y = pd.DataFrame({"target": target_values[:n]})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                model = MultiTaskNet(hidden=(4,), max_epochs=2, random_state=0).fit(X, y)
            except PolyheadError:
                return
            try:
                pred = model.predict(X)
            except PolyheadError:
                return
        assert len(pred) == n

    run()
