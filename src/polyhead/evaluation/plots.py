"""Figures for reports: matplotlib (the ``plot`` extra), drawn off-screen, returned as Figures.

Every function reads plain data (summaries, histories, manifests), never a live training loop,
so a report can be rebuilt from saved results.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

_BLUE, _ORANGE, _GREY = "#2f6db5", "#e08a1e", "#6b7280"


def _plt() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("plots need matplotlib: pip install 'polyhead[plot]'") from exc
    return plt


def to_svg(fig: Any) -> str:
    """A figure as SVG text (and closes it)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def to_data_uri(fig: Any) -> str:
    """A figure as a self-contained ``data:image/svg+xml;base64,...`` URI."""
    return "data:image/svg+xml;base64," + base64.b64encode(to_svg(fig).encode()).decode()


def metric_intervals(summary: Any, task: str, metric: str, lower_is_better: bool = False) -> Any:
    """Mean and 95% interval of one metric of one task, one row per model."""
    plt = _plt()
    rows = summary[(summary["task"] == task) & (summary["metric"] == metric)]
    fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(rows) + 1.2))
    y = np.arange(len(rows))
    half = (rows["ci_high"] - rows["ci_low"]).to_numpy() / 2
    ax.errorbar(rows["mean"], y, xerr=np.nan_to_num(half), fmt="o", color=_BLUE, ecolor=_GREY,
                capsize=4)
    ax.set_yticks(y, rows["model"].tolist())
    ax.invert_yaxis()
    better = "lower is better" if lower_is_better else "higher is better"
    ax.set_xlabel(f"{metric} ({better}); mean and 95% interval over folds")
    ax.set_title(f"{task}: {metric}", loc="left")
    ax.grid(axis="x", alpha=0.3)
    return fig


def learning_curves(history: Sequence[Mapping[str, Any]], title: str) -> Any:
    """Train and validation loss per epoch, one panel per task head."""
    plt = _plt()
    tasks = list(history[0]["train"]) if history else []
    fig, axes = plt.subplots(1, max(1, len(tasks)), figsize=(3.4 * max(1, len(tasks)), 2.8),
                             squeeze=False)
    epochs = [r["epoch"] for r in history]
    for ax, task in zip(axes[0], tasks, strict=False):
        ax.plot(epochs, [r["train"][task] for r in history], color=_BLUE, label="train")
        if history[0].get("valid"):
            ax.plot(epochs, [r["valid"][task] for r in history], color=_ORANGE, label="validation")
        ax.set_title(task, loc="left")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("loss")
    axes[0][0].legend(frameon=False)
    fig.suptitle(title, x=0.01, ha="left")
    fig.tight_layout()
    return fig


def confusion(y_true: Sequence[Any], y_pred: Sequence[Any], title: str, max_classes: int = 30) -> Any:
    """Confusion matrix (rows: true class, columns: predicted), counts shaded per row."""
    plt = _plt()
    labels = sorted(set(map(str, y_true)) | set(map(str, y_pred)), key=_natural)[:max_classes]
    index = {c: i for i, c in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)))
    for t, p in zip(map(str, y_true), map(str, y_pred), strict=True):
        if t in index and p in index:
            matrix[index[t], index[p]] += 1
    share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = min(9.0, 1.6 + 0.32 * len(labels))
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=90 if len(labels) > 6 else 0)
    ax.set_yticks(range(len(labels)), labels)
    if len(labels) <= 12:
        for i in range(len(labels)):
            for j in range(len(labels)):
                if matrix[i, j]:
                    ax.text(j, i, int(matrix[i, j]), ha="center", va="center",
                            color="white" if share[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, loc="left")
    return fig


def scatter(y_true: Sequence[float], y_pred: Sequence[float], title: str) -> Any:
    """Predicted against true values, with the identity line."""
    plt = _plt()
    t, p = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.scatter(t, p, s=6, alpha=0.35, color=_BLUE, linewidths=0)
    lo, hi = np.nanmin([t.min(), p.min()]), np.nanmax([t.max(), p.max()])
    ax.plot([lo, hi], [lo, hi], color=_GREY, lw=1)
    ax.set_xlabel("true")
    ax.set_ylabel("predicted")
    ax.set_title(title, loc="left")
    ax.grid(alpha=0.3)
    return fig


def architecture(arch: Mapping[str, Any], kinds: Mapping[str, str] | None = None,
                 title: str = "MultiTaskNet") -> Any:
    """The network as a diagram: inputs, trunk layers, one head per task (no graphviz).

    ``arch`` is the ``architecture`` entry of a model manifest (``in_features``, ``hidden``,
    ``activation``, ``dropout``, ``norm``, ``heads``, optionally ``input_names`` and
    ``n_parameters``), so a saved model can be drawn without loading torch.
    """
    from matplotlib.patches import FancyBboxPatch

    plt = _plt()
    kinds = kinds or {}
    hidden = list(arch.get("hidden", []))
    heads = dict(arch.get("heads", {}))
    members = int(arch.get("n_ensemble", 1) or 1)
    columns = 2 + len(hidden)
    fig_w = 2.3 * columns + 1
    fig_h = max(3.0, 1.0 + 0.9 * len(heads))
    fig, ax = plt.subplots(figsize=(fig_w, fig_h))
    ax.set_xlim(0, columns * 2.3)
    ax.set_ylim(0, fig_h)
    ax.axis("off")
    mid = fig_h / 2

    def box(x: float, y: float, text: str, colour: str) -> tuple[float, float]:
        height = 0.25 + 0.17 * (text.count("\n") + 1)
        ax.add_patch(FancyBboxPatch((x, y - height / 2), 1.9, height, boxstyle="round,pad=0.05",
                                    facecolor=colour, edgecolor="#333333", linewidth=1))
        ax.text(x + 0.95, y, text, ha="center", va="center", fontsize=8)
        return x + 1.9, y

    def arrow(a: tuple[float, float], b: tuple[float, float]) -> None:
        ax.annotate("", xy=b, xytext=a, arrowprops={"arrowstyle": "->", "color": "#333333"})

    names = [str(n) if len(str(n)) <= 18 else str(n)[:17] + "…" for n in arch.get("input_names") or []]
    shown = "\n".join(names[:3]) + ("\n…" if len(names) > 3 else "")
    end = box(0.1, mid, f"input: {arch.get('in_features')} features\n{shown}", "#eef2f7")
    width = arch.get("in_features")
    extras = [arch.get("activation", "relu")]
    if arch.get("norm"):
        extras.append(f"{arch['norm']} norm")
    if arch.get("dropout"):
        extras.append(f"dropout {arch['dropout']}")
    for i, size in enumerate(hidden):
        x = 0.1 + 2.3 * (i + 1)
        arrow(end, (x, mid))
        end = box(x, mid, f"trunk {i + 1}\nLinear {width}→{size}\n{', '.join(map(str, extras))}", "#dbe7f5")
        width = size
    x = 0.1 + 2.3 * (len(hidden) + 1)
    for j, (name, dim) in enumerate(heads.items()):
        y = fig_h - 0.7 - j * (fig_h - 1.4) / max(1, len(heads) - 1) if len(heads) > 1 else mid
        arrow(end, (x, y))
        kind = kinds.get(name, "")
        out = _head_label(kind)
        box(x, y, f"head: {name}\nLinear {width}→{dim}\n{kind} {out}".strip(), "#fbe3c4")
    params = arch.get("n_parameters")
    suffix = f"; {params:,} parameters" if params else ""
    if members > 1:
        suffix += f"; {members} packed ensemble members"
    ax.set_title(f"{title}{suffix}", loc="left", fontsize=10)
    return fig


def _head_label(kind: str) -> str:
    from ..kinds import KINDS

    cls = KINDS.get(kind)
    return cls.head_label if cls is not None else ""


def bars(labels: Sequence[str], values: Sequence[float], what: str, title: str) -> Any:
    """One horizontal bar per label (a per-label score)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.0, 0.3 * len(labels) + 1.2))
    y = np.arange(len(labels))
    ax.barh(y, np.nan_to_num(np.asarray(values, dtype=float)), color=_BLUE)
    ax.set_yticks(y, [str(v) for v in labels])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel(what)
    ax.set_title(title, loc="left")
    ax.grid(axis="x", alpha=0.3)
    return fig


def band(y_true: np.ndarray, quantiles: np.ndarray, levels: Sequence[float], title: str) -> Any:
    """Truth against the predicted band (outer quantiles) and the middle quantile, rows sorted
    by the middle prediction."""
    plt = _plt()
    order = np.argsort(quantiles[:, len(levels) // 2]) if len(y_true) else np.arange(0)
    x = np.arange(len(order))
    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    if len(order):
        ax.fill_between(x, quantiles[order, 0], quantiles[order, -1], color=_BLUE, alpha=0.25,
                        label=f"q{levels[0]:g} to q{levels[-1]:g}")
        ax.plot(x, quantiles[order, len(levels) // 2], color=_BLUE, lw=1,
                label=f"q{levels[len(levels) // 2]:g}")
        ax.scatter(x, y_true[order], s=5, color=_ORANGE, alpha=0.6, label="true", linewidths=0)
    ax.set_xlabel("rows, by predicted middle quantile")
    ax.legend(frameon=False, fontsize=8)
    ax.set_title(title, loc="left")
    ax.grid(alpha=0.3)
    return fig


def reliability(confidence: np.ndarray, correct: np.ndarray, title: str, bins: int = 10) -> Any:
    """Observed frequency against predicted probability in equal-width bins, with the
    diagonal of perfect calibration and the rows per bin."""
    plt = _plt()
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    mids, freq, counts = [], [], []
    for b in range(bins):
        rows = which == b
        if rows.any():
            mids.append(float(confidence[rows].mean()))
            freq.append(float(np.asarray(correct, dtype=float)[rows].mean()))
            counts.append(int(rows.sum()))
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    ax.plot([0, 1], [0, 1], color=_GREY, lw=1, label="perfectly calibrated")
    ax.plot(mids, freq, "o-", color=_BLUE, label="model")
    for x, f, c in zip(mids, freq, counts, strict=True):
        ax.annotate(str(c), (x, f), textcoords="offset points", xytext=(3, -10), fontsize=7,
                    color=_GREY)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed frequency")
    ax.legend(frameon=False, fontsize=8, loc="upper left")
    ax.set_title(title, loc="left")
    ax.grid(alpha=0.3)
    return fig


def coverage_curve(table: Any, task: str) -> Any:
    """Coverage against the target 1 - alpha, one line per model, with the diagonal."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    rows = table[table["task"] == task]
    for model, part in rows.groupby("model", sort=False):
        part = part.groupby("alpha")["coverage"].mean().sort_index(ascending=False)
        ax.plot(1 - part.index, part.to_numpy(), "o-", label=str(model))
    ax.plot([0.5, 1], [0.5, 1], color=_GREY, lw=1, label="target")
    ax.set_xlabel("target coverage (1 - alpha)")
    ax.set_ylabel("coverage on held-out folds")
    ax.legend(frameon=False, fontsize=8)
    ax.set_title(f"{task}: coverage against alpha", loc="left")
    ax.grid(alpha=0.3)
    return fig


def _natural(text: str) -> tuple[int, float, str]:
    try:
        return (0, float(text), "")
    except ValueError:
        return (1, 0.0, text)
