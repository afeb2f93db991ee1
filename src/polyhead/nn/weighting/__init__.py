"""Loss weighting strategies: how per-task losses become one training loss.

Chosen by name (``weighting="uncertainty"``) or by instance (``weighting=Uncertainty()``). A new
strategy is a small subclass of :class:`LossWeighting` in a file of its own, registered here.
"""

from __future__ import annotations

import copy

from .base import LossWeighting
from .dwa import DWA
from .equal import Equal
from .famo import FAMO
from .uncertainty import Uncertainty

WEIGHTINGS: dict[str, type[LossWeighting]] = {"equal": Equal, "uncertainty": Uncertainty,
                                              "dwa": DWA, "famo": FAMO}


def get_weighting(spec: str | LossWeighting) -> LossWeighting:
    """A fresh strategy from a name or a copy of an instance (the caller's stays untouched)."""
    if isinstance(spec, LossWeighting):
        return copy.deepcopy(spec)
    if isinstance(spec, str) and spec in WEIGHTINGS:
        return WEIGHTINGS[spec]()
    raise ValueError(f"unknown weighting {spec!r}; choose from {', '.join(WEIGHTINGS)} "
                     "or pass a LossWeighting instance")


__all__ = ["DWA", "FAMO", "WEIGHTINGS", "Equal", "LossWeighting", "Uncertainty", "get_weighting"]
