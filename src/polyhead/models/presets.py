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
    # one network, plain standardisation: the previous default, about LightGBM's fit time
    "fast": {"n_ensemble": 1, "numeric": "standard", "best_epoch": "joint",
             "numeric_embedding": "none", "n_bins": 32},
    # eight packed members, standardisation robust to stray spikes
    "default": {"n_ensemble": 8, "numeric": "clipped", "best_epoch": "joint",
                "numeric_embedding": "none", "n_bins": 32},
    # the default's members trained twice, with plain inputs and with piecewise-linear
    # embeddings on 8 quantile bins: the embedded one predicts only when its validation loss
    # is lower by more than the split's noise (see MultiTaskNet's numeric_embedding)
    "best": {"n_ensemble": 8, "numeric": "clipped", "best_epoch": "joint",
             "numeric_embedding": "auto", "n_bins": 8},
}


def resolve(preset: str, given: dict[str, Any]) -> dict[str, Any]:
    """The preset's values under the explicitly given (non-None) parameters."""
    if preset not in PRESETS:
        raise PolyheadError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return {k: (given[k] if given.get(k) is not None else v) for k, v in PRESETS[preset].items()}
