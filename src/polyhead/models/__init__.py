"""The estimators: one module per model family, all behind the same task API.

Importing this package registers every family with :mod:`polyhead.registry`, which is how
:func:`polyhead.load` finds the class a model directory names. Torch is imported only when a
network is fitted or loaded.
"""

from .calibrated import Calibrated
from .chain import TaskChain
from .conformal import Conformal
from .forest import MultiTaskForest
from .gbm import MultiTaskGBM
from .linear import MultiTaskLinear
from .net import MultiTaskNet
from .separate import Separate, SingleTarget

__all__ = ["Calibrated", "Conformal", "MultiTaskForest", "MultiTaskGBM", "MultiTaskLinear", "MultiTaskNet", "Separate",
           "SingleTarget", "TaskChain"]
