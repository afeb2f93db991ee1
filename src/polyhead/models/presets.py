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
             "numeric_embedding": "none", "n_bins": 32},
    # eight packed members, standardisation robust to stray spikes: the previous default,
    # about LightGBM's fit time
    "balanced": {"n_ensemble": 8, "numeric": "clipped", "best_epoch": "joint",
                 "numeric_embedding": "none", "n_bins": 32},
    # the balanced members trained twice, with plain inputs and with piecewise-linear
    # embeddings on 8 quantile bins: the embedded one predicts only when its validation loss
    # is lower by more than the split's noise (see MultiTaskNet's numeric_embedding); where
    # there is nothing to choose on (no validation split, streaming) it trains once, plainly
    "default": {"n_ensemble": 8, "numeric": "clipped", "best_epoch": "joint",
                "numeric_embedding": "auto", "n_bins": 8},
    # the default, and each task predicted by its own best epoch where that beats the joint
    # epoch beyond the split's noise (best_epoch="auto")
    "best": {"n_ensemble": 8, "numeric": "clipped", "best_epoch": "auto",
             "numeric_embedding": "auto", "n_bins": 8},
}


def resolve(preset: str, given: dict[str, Any]) -> dict[str, Any]:
    """The preset's values under the explicitly given (non-None) parameters."""
    if preset not in PRESETS:
        raise PolyheadError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return {k: (given[k] if given.get(k) is not None else v) for k, v in PRESETS[preset].items()}
