"""polyhead: multi-task learning on tabular data - one model, several targets of mixed kinds.

>>> import polyhead
>>> model = polyhead.MultiTaskNet(tasks={"rings": "regression", "rings_class": "multiclass"})

Heavy modules (torch, the network code) are imported on first use, so ``import polyhead`` and
the command line's ``--help`` stay fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from . import datasets
    from .chain import TaskChain
    from .comparison import Comparison, compare
    from .exceptions import ModelFileError, NotFittedError, PolyheadError, TaskError
    from .forest import MultiTaskForest
    from .gbm import MultiTaskGBM
    from .linear import MultiTaskLinear
    from .net import MultiTaskNet
    from .persistence import load
    from .separate import Separate, SingleTarget
    from .tasks import Task

__all__ = [
    "Comparison",
    "ModelFileError",
    "MultiTaskForest",
    "MultiTaskGBM",
    "MultiTaskLinear",
    "MultiTaskNet",
    "NotFittedError",
    "PolyheadError",
    "Separate",
    "SingleTarget",
    "Task",
    "TaskChain",
    "TaskError",
    "__version__",
    "compare",
    "datasets",
    "load",
]

_LAZY = {
    "MultiTaskNet": ("polyhead.net", "MultiTaskNet"),
    "MultiTaskForest": ("polyhead.forest", "MultiTaskForest"),
    "MultiTaskGBM": ("polyhead.gbm", "MultiTaskGBM"),
    "MultiTaskLinear": ("polyhead.linear", "MultiTaskLinear"),
    "Separate": ("polyhead.separate", "Separate"),
    "SingleTarget": ("polyhead.separate", "SingleTarget"),
    "TaskChain": ("polyhead.chain", "TaskChain"),
    "compare": ("polyhead.comparison", "compare"),
    "Comparison": ("polyhead.comparison", "Comparison"),
    "Task": ("polyhead.tasks", "Task"),
    "load": ("polyhead.persistence", "load"),
    "ModelFileError": ("polyhead.exceptions", "ModelFileError"),
    "NotFittedError": ("polyhead.exceptions", "NotFittedError"),
    "PolyheadError": ("polyhead.exceptions", "PolyheadError"),
    "TaskError": ("polyhead.exceptions", "TaskError"),
    "datasets": ("polyhead.datasets", None),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'polyhead' has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
