"""The neural side of polyhead: the trunk-and-heads module, its optimiser and loss weighting.

Importing this package imports torch; the rest of polyhead imports it only when a network is
fitted or loaded.
"""

from .inputs import InputBlock
from .layers import BatchEnsembleLinear, PackedLinear
from .model import MultiTaskModule, Trunk
from .weighting import LossWeighting, get_weighting

__all__ = ["BatchEnsembleLinear", "InputBlock", "LossWeighting", "MultiTaskModule", "PackedLinear",
           "Trunk", "get_weighting"]
