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
    from .evaluation.comparison import Comparison, compare
    from .exceptions import ModelFileError, NotFittedError, PolyheadError, TaskError
    from .io.parquet import ParquetSource
    from .models.calibrated import Calibrated
    from .models.chain import TaskChain
    from .models.conformal import Conformal
    from .models.forest import MultiTaskForest
    from .models.gbm import MultiTaskGBM
    from .models.linear import MultiTaskLinear
    from .models.net import MultiTaskNet
    from .models.separate import Separate, SingleTarget
    from .persistence import load
    from .tasks import Task

__all__ = [
    "Calibrated",
    "Comparison",
    "Conformal",
    "ModelFileError",
    "MultiTaskForest",
    "MultiTaskGBM",
    "MultiTaskLinear",
    "MultiTaskNet",
    "NotFittedError",
    "ParquetSource",
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
    "MultiTaskNet": ("polyhead.models.net", "MultiTaskNet"),
    "MultiTaskForest": ("polyhead.models.forest", "MultiTaskForest"),
    "MultiTaskGBM": ("polyhead.models.gbm", "MultiTaskGBM"),
    "MultiTaskLinear": ("polyhead.models.linear", "MultiTaskLinear"),
    "Separate": ("polyhead.models.separate", "Separate"),
    "SingleTarget": ("polyhead.models.separate", "SingleTarget"),
    "TaskChain": ("polyhead.models.chain", "TaskChain"),
    "Conformal": ("polyhead.models.conformal", "Conformal"),
    "Calibrated": ("polyhead.models.calibrated", "Calibrated"),
    "compare": ("polyhead.evaluation.comparison", "compare"),
    "Comparison": ("polyhead.evaluation.comparison", "Comparison"),
    "Task": ("polyhead.tasks", "Task"),
    "ParquetSource": ("polyhead.io.parquet", "ParquetSource"),
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
