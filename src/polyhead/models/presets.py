"""Presets of :class:`~polyhead.MultiTaskNet`: named starting points chosen by benchmark.

A preset fills in the parameters left at ``None``; a parameter given explicitly always wins.
Their measured quality and fit time (``python benchmarks/quality.py``) are in the README's
"Presets" section.
"""

from __future__ import annotations

from typing import Any

from ..exceptions import PolyheadError

#: what each preset sets (only parameters that the user left at None)
PRESETS: dict[str, dict[str, Any]] = {
    # one network, plain standardisation: the first default, a third of LightGBM's fit time
    "fast": {"n_ensemble": 1, "numeric": "standard", "best_epoch": "joint",
             "numeric_embedding": "none", "n_bins": 32, "patience": 30, "probe_members": 1,
             "twins": "none"},
    # eight packed members, standardisation robust to stray spikes: an earlier default,
    # about LightGBM's fit time
    "balanced": {"n_ensemble": 8, "numeric": "clipped", "best_epoch": "joint",
                 "numeric_embedding": "none", "n_bins": 32, "patience": 30, "probe_members": 1,
             "twins": "none"},
    # the balanced members, with plain inputs or with piecewise-linear embeddings on quantile
    # bins (8 up to 3,200 rows; on larger data a third probe with more bins, n_bins="auto"; a value held by a bin's
    # share of the rows an edge of its own): a one-member probe of each decides, the embedding only when its
    # validation loss is lower by more than the split's noise, then the chosen inputs train
    # with every member (see MultiTaskNet's numeric_embedding); where there is nothing to
    # choose on (no validation split, streaming) it trains once, plainly.
    # Each task is predicted by its own best epoch where that beats the joint epoch beyond the
    # split's noise (best_epoch="auto")
    "default": {"n_ensemble": 8, "numeric": "clipped", "best_epoch": "auto",
                "numeric_embedding": "auto", "n_bins": "auto", "patience": 30, "probe_members": 1, "twins": "auto"},
    # the default, waiting 50 epochs without a lower validation loss instead of 30, and
    # choosing the embedding on both full candidates (probes of all eight members: the
    # default before probes, at 1/0.644 of its time) rather than on one-member probes
    "best": {"n_ensemble": 8, "numeric": "clipped", "best_epoch": "auto",
             "numeric_embedding": "auto", "n_bins": "auto", "patience": 50, "probe_members": 8,
             "twins": "auto"},
}


def resolve(preset: str, given: dict[str, Any]) -> dict[str, Any]:
    """The preset's values under the explicitly given (non-None) parameters."""
    if preset not in PRESETS:
        raise PolyheadError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return {k: (given[k] if given.get(k) is not None else v) for k, v in PRESETS[preset].items()}
