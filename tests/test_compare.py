"""compare(): the same folds for every model, paired intervals, consistency, the report."""

import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from conftest import make_mixed

from polyhead import MultiTaskForest, MultiTaskLinear, MultiTaskNet, Separate
from polyhead.evaluation.comparison import Comparison, compare, consistency

FAST = {"hidden": (16,), "max_epochs": 15, "random_state": 0}
TASKS = {"amount": "regression", "kind": "binary", "level": "multiclass"}


@pytest.fixture(scope="module")
def result() -> Comparison:
    X, y = make_mixed(n=240, missing=0.1)
    y["level_num"] = y["level"]                     # the same quantity as a number
    tasks = {**TASKS, "level_num": "regression"}
    models = {"separate nets": Separate(MultiTaskNet(**FAST)), "joint net": MultiTaskNet(**FAST),
              "forest": MultiTaskForest(n_estimators=10, random_state=0), "linear": MultiTaskLinear()}
    return compare(X, y, tasks=tasks, models=models, cv=3, repeats=2, random_state=0)


def test_tidy_results_and_the_same_folds_for_every_model(result):
    r = result.results
    assert list(r.columns) == ["model", "task", "metric", "repeat", "fold", "value", "fit_seconds"]
    counts = r.groupby(["model", "task", "metric"]).size()
    assert (counts == 6).all()                                   # 3 folds x 2 repeats each
    assert set(r["model"]) == {"separate nets", "joint net", "forest", "linear"}
    indexes = [p.index for p in result.predictions.values()]
    assert all(ix.equals(indexes[0]) for ix in indexes)          # same rows, every model
    assert len(indexes[0]) == 240                                # each row predicted once


def test_folds_are_stratified_on_the_first_class_task():
    X, y = make_mixed(n=90)
    y["kind"] = np.where(np.arange(90) < 12, "rare", "common")  # 12 rare rows, 3 folds
    out = compare(X, y, tasks={"kind": "binary"}, models={"linear": MultiTaskLinear()}, cv=3,
                  repeats=2)
    assert len(out.folds) == 6
    for _, _, test in out.folds:
        assert (y["kind"].iloc[test] == "rare").sum() == 4     # 12 rare rows over 3 folds
    assert out.results.query("metric == 'roc_auc'")["value"].notna().all()


def test_summary_paired_differences(result):
    s = result.summary()
    base = s[s["model"] == "separate nets"]
    assert (base["diff"] == 0).all()
    other = s[(s["model"] == "forest") & (s["task"] == "amount") & (s["metric"] == "mae")].iloc[0]
    assert other["diff_low"] <= other["diff"] <= other["diff_high"]
    assert other["ci_low"] <= other["mean"] <= other["ci_high"]
    assert set(s.columns) >= {"mean", "std", "diff", "diff_low", "diff_high", "better"}


def test_missing_labels_respected_and_reported(result):
    tasks = {t["name"]: t for t in result.data["tasks"]}
    assert tasks["amount"]["missing_labels"] > 0
    assert result.data["rows"] == 240


def test_consistency_between_number_and_class(result):
    pair = result.results[result.results["task"] == "level_num ~ level"]
    assert set(pair["metric"]) == {"agree_exact", "agree_within_1"}
    assert pair["value"].between(0, 1).all()
    assert consistency(np.array([2.4, 5.0, 1.2]), np.array([2, 3, 0])) == {
        "agree_exact": pytest.approx(1 / 3), "agree_within_1": pytest.approx(2 / 3)}


def test_markdown_and_html(result, tmp_path):
    md = result.to_markdown()
    assert md.splitlines()[0].startswith("| task | metric | model |") and "baseline" in md
    html = result.to_html(tmp_path / "report.html")
    assert (tmp_path / "report.html").read_text() == html
    assert "Is one joint model better than one model per target?" in html
    assert html.count("<img") >= 8 and "data:image/svg+xml;base64," in html
    assert "http://" not in html.replace("http://www.w3.org", "")   # no network resources
    assert result.best_model() in result.settings["models"]


def test_bad_arguments():
    X, y = make_mixed(n=40)
    with pytest.raises(ValueError, match="baseline 'nope' is not one of the models"):
        compare(X, y, tasks=TASKS, models={"linear": MultiTaskLinear()}, baseline="nope")
    with pytest.raises(ValueError, match="cv must be >= 2"):
        compare(X, y, tasks=TASKS, models={"linear": MultiTaskLinear()}, cv=1)


def test_cli_compare_and_plot_model(tmp_path, capsys):
    from polyhead.cli import main

    X, y = make_mixed(n=120)
    pd.concat([X, y], axis=1).to_csv(tmp_path / "d.csv", index=False)

    def run(*args):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code
        return code, capsys.readouterr()

    code, out = run("compare", tmp_path / "d.csv", "-t", "amount", "-t", "kind", "--models",
                    "separate-nets,joint-net-fast,linear", "--cv", "2", "--repeats", "1",
                    "-o", tmp_path / "r.html", "--json")
    assert code == 0, out.err
    summary = json.loads(out.out)
    assert summary["baseline"] == "separate nets" and (tmp_path / "r.html").exists()
    assert "joint net (fast)" in (tmp_path / "r.html").read_text()
    code, out = run("compare", tmp_path / "d.csv", "-t", "amount", "--models", "svm", "-o", tmp_path / "x.html")
    assert code == 2 and "unknown model 'svm'" in out.err
    code, out = run("fit", tmp_path / "d.csv", "-t", "amount", "-t", "kind", "-p", "max_epochs=3",
                    "-o", tmp_path / "m")
    assert code == 0
    code, out = run("plot-model", tmp_path / "m", "-o", tmp_path / "m.svg")
    assert code == 0 and (tmp_path / "m.svg").read_text().lstrip().startswith("<?xml")
    run("fit", tmp_path / "d.csv", "-t", "amount", "-m", "linear", "-o", tmp_path / "lin")
    code, out = run("plot-model", tmp_path / "lin", "-o", tmp_path / "l.svg")
    assert code == 2 and "no network architecture to draw" in out.err


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make test installs it)")
def test_report_in_a_real_browser(result, tmp_path):
    """Open the report as a person would: headless Chromium, a screenshot, every figure decoded
    and no script errors."""
    page = tmp_path / "report.html"
    result.to_html(page)
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}"]
    shot = tmp_path / "report.png"
    subprocess.run([*flags, "--window-size=1200,3000", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    assert shot.exists() and shot.stat().st_size > 50_000
    dom = subprocess.run([*flags, "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    body = dom[dom.index("<body"):dom.index(">", dom.index("<body"))]
    attrs = dict(part.split("=") for part in body.replace('"', "").split()[1:])
    assert int(attrs["data-figures"]) >= 8
    assert attrs["data-figures-loaded"] == attrs["data-figures"]
    assert attrs["data-errors"] == "0"


def test_compare_and_report_handle_every_kind(tmp_path):
    from test_kinds import NEW_TASKS, mixed_kinds

    from polyhead import MultiTaskGBM

    X, y = mixed_kinds(150)
    result = compare(X, y, tasks=NEW_TASKS,
                     models={"separate": Separate(MultiTaskGBM(n_estimators=20)),
                             "joint net": MultiTaskNet(hidden=(16,), max_epochs=10, random_state=0)},
                     cv=2, repeats=1)
    summary = result.summary()
    assert {"poisson_deviance", "mae", "pinball", "coverage"} <= set(summary["metric"])
    html = result.to_html(tmp_path / "r.html")
    assert html.count("<img") >= 6  # per-task metric plots and each kind's prediction figure
    assert "grade: predictions against the truth" in html and "y: predictions against the truth" in html


def test_parallel_compare_gives_the_same_results_and_reports_progress():
    X, y = make_mixed(160)
    models = {"separate": Separate(MultiTaskLinear()),
              "joint net": MultiTaskNet(hidden=(8,), max_epochs=5, random_state=0)}
    seen = []
    one = compare(X, y[["amount", "kind"]], tasks={"amount": "regression", "kind": "binary"},
                  models=models, cv=2, repeats=1, n_jobs=1,
                  progress=lambda *args: seen.append(args))
    two = compare(X, y[["amount", "kind"]], tasks={"amount": "regression", "kind": "binary"},
                  models=models, cv=2, repeats=1, n_jobs=2)
    cols = ["model", "task", "metric", "repeat", "fold", "value"]
    pd.testing.assert_frame_equal(one.results[cols], two.results[cols])
    assert [s[4] for s in seen] == [1, 2, 3, 4] and all(s[5] == 4 for s in seen)
    assert two.settings["n_jobs"] == 2
