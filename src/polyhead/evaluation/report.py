"""The comparison report: one self-contained HTML file (figures as SVG data URIs, no network)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import pandas as pd

from . import plots

if TYPE_CHECKING:  # pragma: no cover
    from .comparison import Comparison

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;
color:#1f2933;line-height:1.45;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid #e4e7eb;padding-bottom:.3rem}
table{border-collapse:collapse;margin:.8rem 0;font-size:.9rem}th,td{padding:.3rem .7rem;border-bottom:1px solid #e4e7eb;
text-align:right}th{background:#f5f7fa}td:first-child,th:first-child{text-align:left}
.better{color:#1a7f37;font-weight:600}.worse{color:#b42318;font-weight:600}.muted{color:#6b7280}
.answer{background:#f0f6ff;border-left:4px solid #2f6db5;padding:.8rem 1rem;margin:1rem 0}
figure{margin:1rem 0}img{max-width:100%;height:auto}.grid{display:flex;flex-wrap:wrap;gap:1rem}
"""

# Records script errors and whether every figure decoded, for tests and for people.
_SCRIPT = """
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message)); });
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-figures', imgs.length);
  document.body.setAttribute('data-figures-loaded', ok);
  document.body.setAttribute('data-errors', window.__errors.length);
});
"""


def _e(text: Any) -> str:
    return html.escape(str(text))


def _table(frame: pd.DataFrame, classes: dict[int, str] | None = None) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in frame.columns)
    body = []
    for i, row in enumerate(frame.itertuples(index=False)):
        cls = f' class="{classes[i]}"' if classes and classes.get(i) else ""
        body.append("<tr>" + "".join(f"<td{cls if j == len(row) - 1 else ''}>{_e(v)}</td>"
                                     for j, v in enumerate(row)) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figure(fig: Any, caption: str) -> str:
    return (f'<figure><img alt="{_e(caption)}" src="{plots.to_data_uri(fig)}">'
            f"<figcaption class=\"muted\">{_e(caption)}</figcaption></figure>")


def _answer(comp: Comparison, summary: pd.DataFrame) -> str:
    """One sentence per task: is the joint model better than the baseline, with its interval."""
    from .comparison import _flag

    joint = next((m for m in comp.settings["models"] if "joint" in m.lower() and m != comp.baseline), None)
    if joint is None:
        return ""
    lines = []
    for t in comp.tasks:
        metric = t.main_metric
        row = summary[(summary["model"] == joint) & (summary["task"] == t.name) & (summary["metric"] == metric)]
        if row.empty:
            continue
        r = row.iloc[0]
        verdict = {True: '<span class="better">better</span>', False: '<span class="worse">worse</span>',
                   "": "no detectably different"}[_flag(r["better"])]
        lines.append(f"<li><b>{_e(t.name)}</b> ({_e(metric)}): {_e(joint)} {r['mean']:.4f} vs "
                     f"{_e(comp.baseline)} {r['mean'] - r['diff']:.4f}; difference {r['diff']:+.4f}, "
                     f"95% interval [{r['diff_low']:+.4f}, {r['diff_high']:+.4f}]: {verdict}.</li>")
    return (f'<div class="answer"><b>Is one joint model better than one model per target?</b> '
            f"{_e(joint)} against {_e(comp.baseline)}, paired over {comp.settings['cv']} folds × "
            f"{comp.settings['repeats']} repeats:<ul>{''.join(lines)}</ul></div>")


def _uncertainty(comp: Comparison) -> str:
    """Coverage and size of conformal models' regions, coverage against alpha per task, and a
    reliability diagram per class task of the best model."""
    parts = []
    table = comp.intervals
    if not table.empty:
        own = table[table["alpha"] == table["fitted_alpha"]]
        summary = (own.groupby(["model", "task"], sort=False)
                   .agg(alpha=("alpha", "first"), coverage=("coverage", "mean"), size=("size", "mean"))
                   .reset_index())
        summary["target"] = 1 - summary["alpha"]
        parts.append("<h2>Uncertainty</h2><p>Conformal regions on the held-out folds: the share "
                     "of labels covered (target 1 - alpha) and the mean interval width or set "
                     "size; <b>joint</b> is the share of rows with every task covered at once.</p>")
        parts.append(_table(summary[["model", "task", "alpha", "target", "coverage", "size"]].round(4)))
        grid = [_figure(plots.coverage_curve(table, t.name), f"{t.name}: coverage against alpha")
                for t in comp.tasks]
        if (table["task"] == "joint").any():
            grid.append(_figure(plots.coverage_curve(table, "joint"), "every task at once: coverage against alpha"))
        parts.append(f'<div class="grid">{"".join(grid)}</div>')
    best = comp.best_model()
    outputs = comp.outputs.get(best)
    figures = []
    if outputs is not None:
        y = comp.y.iloc[outputs["__rows__"]]
        for t in comp.tasks:
            pairs = t.reliability(y, outputs[t.name])
            if pairs is not None:
                figures.append(_figure(plots.reliability(pairs[0], pairs[1], f"{t.name} ({best})"),
                                       f"{t.name}: reliability of the predicted probabilities"))
    if figures:
        if not parts:
            parts.append("<h2>Uncertainty</h2>")
        parts.append(f"<p class=\"muted\">Reliability of {_e(best)}'s probabilities "
                     "(out-of-fold, first repeat): a calibrated model follows the diagonal.</p>")
        parts.append(f'<div class="grid">{"".join(figures)}</div>')
    return "".join(parts)


def render(comp: Comparison) -> str:
    """The whole report as an HTML string."""
    summary = comp.summary()
    parts = [f"<h1>polyhead comparison</h1><p class=\"muted\">{comp.settings['cv']}-fold "
             f"cross-validation × {comp.settings['repeats']} repeats, the same folds for every "
             f"model; intervals are 95% corrected resampled t intervals (Nadeau and Bengio).</p>"]
    parts.append(_answer(comp, summary))

    data = comp.data
    parts.append(f"<h2>Data</h2><p>{data['rows']:,} rows, {data['features']} features, "
                 f"{len(data['tasks'])} tasks.</p>")
    parts.append(_table(pd.DataFrame([{
        "task": t["name"], "kind": t["kind"], "columns": ", ".join(t["columns"]),
        "classes": "" if t["classes"] is None else t["classes"],
        "missing labels": f"{t['missing_labels']:,} ({t['missing_labels'] / max(data['rows'], 1):.1%})"}
        for t in data["tasks"]])))

    parts.append("<h2>Results</h2>")
    display = comp._display_table("main")
    marks = {i: ("better" if "better" in str(v) else "worse" if "worse" in str(v) else "")
             for i, v in enumerate(display.iloc[:, -1])}
    parts.append(_table(display, marks))
    seconds = comp.fit_seconds().reset_index()
    seconds.columns = ["model", "fit seconds (mean per fold)", "std"]
    parts.append(_table(seconds.round(3)))
    grid = []
    for t in comp.tasks:
        grid.append(_figure(plots.metric_intervals(summary, t.name, t.main_metric,
                                                   comp.lower_is_better(t.name, t.main_metric)),
                            f"{t.name}: {t.main_metric} per model"))
    for pair in sorted({task for task in summary["task"] if " ~ " in task}):
        grid.append(_figure(plots.metric_intervals(summary, pair, "agree_within_1"),
                            f"consistency {pair}: class within one of the rounded number"))
    parts.append(f'<div class="grid">{"".join(grid)}</div>')
    full = comp._display_table("all")
    parts.append("<details><summary>Every metric</summary>" + _table(full) + "</details>")

    pairs = sorted({task for task in summary["task"] if " ~ " in task})
    if pairs:
        parts.append("<h2>Consistency between related tasks</h2><p>Tasks that read the same "
                     "column as a number and as a class should agree: how often the class "
                     "prediction equals the rounded numeric prediction, or is within one.</p>")
        cons = summary[summary["task"].isin(pairs)][["task", "model", "metric", "mean", "std"]]
        parts.append(_table(cons.round(4)))

    if comp.histories:
        parts.append("<h2>Learning curves</h2><p class=\"muted\">Per task head, first fold.</p>")
        for name, history in comp.histories.items():
            if history and isinstance(history[0].get("train"), dict):
                parts.append(_figure(plots.learning_curves(history, name), f"{name}: loss per epoch"))
    if comp.architectures:
        parts.append("<h2>Architecture</h2>")
        kinds = {t.name: t.kind for t in comp.tasks}
        for name, arch in comp.architectures.items():
            parts.append(_figure(plots.architecture(arch, kinds, name), f"{name}: trunk and heads"))

    parts.append(_uncertainty(comp))
    best = comp.best_model()
    parts.append(f"<h2>Predictions of the best model: {_e(best)}</h2><p class=\"muted\">Out-of-fold "
                 "predictions of the first repeat; best = lowest mean rank over the tasks' main metrics.</p>")
    outputs = comp.outputs.get(best)
    grid = []
    if outputs is not None:
        rows = outputs["__rows__"]
        y = comp.y.iloc[rows]
        for t in comp.tasks:
            fig = t.figure(y, outputs[t.name], f"{t.name} ({best})")
            if fig is not None:
                grid.append(_figure(fig, f"{t.name}: predictions against the truth"))
    parts.append(f'<div class="grid">{"".join(grid)}</div>')
    body = "\n".join(p for p in parts if p)
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>polyhead comparison</title><style>{_CSS}</style><script>{_SCRIPT}</script>"
            f"</head><body>{body}</body></html>")
