"""Reading model directories written by polyhead before 0.2's array format.

Those stored their scikit-learn sub-models with skops, which is no longer trusted (MLflow treats
it as unsafe: GHSA-w582-9x45-8mpx). ``polyhead.load`` refuses them in one line; ``polyhead
upgrade OLD -o NEW`` (:func:`upgrade`) reads one once, against the allow-list of types below and
with the optional ``skops`` package (``pip install 'polyhead[legacy]'``), and re-saves it as
arrays, after which it loads anywhere without skops.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from ..exceptions import ModelFileError

_ALLOWED: ContextVar[bool] = ContextVar("polyhead_legacy_skops", default=False)

# Types a skops file may construct when upgraded; anything else is refused (tampered file).
TRUSTED_TYPES = frozenset({
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.common.PREDICTOR_RECORD_DTYPE",
    "sklearn._loss.loss.HalfSquaredError", "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.loss.HalfMultinomialLoss", "sklearn._loss.loss.HalfPoissonLoss",
    "sklearn._loss.loss.PinballLoss", "sklearn._loss.link.IdentityLink",
    "sklearn._loss.link.LogitLink", "sklearn._loss.link.LogLink",
    "sklearn._loss.link.SymmetricMultinomialLogit",
    "sklearn._loss.link.Interval", "sklearn._loss._loss.CyHalfSquaredError",
    "sklearn._loss._loss.CyHalfBinomialLoss", "sklearn._loss._loss.CyHalfMultinomialLoss",
    "sklearn._loss._loss.CyHalfPoissonLoss", "sklearn._loss._loss.CyPinballLoss",
    "sklearn.linear_model._glm.glm._GeneralizedLinearRegressor",
    "sklearn.utils._bunch.Bunch", "builtins.slice", "numpy.random._mt19937.MT19937",
    "numpy.random.mtrand.RandomState", "numpy.random._pickle.__randomstate_ctor",
    "numpy.random._pickle.__bit_generator_ctor", "numpy.dtype",
})

UPGRADE_HINT = ("it was saved by an older polyhead with skops, which polyhead no longer loads; "
                "re-save it once with: polyhead upgrade MODEL -o NEW_MODEL "
                "(needs pip install 'polyhead[legacy]')")


@contextlib.contextmanager
def skops_allowed() -> Iterator[None]:
    """Within this block, skops units load (against :data:`TRUSTED_TYPES`)."""
    token = _ALLOWED.set(True)
    try:
        yield
    finally:
        _ALLOWED.reset(token)


def load_skops(data: bytes) -> Any:
    """A skops unit of an old model directory: refused unless inside :func:`skops_allowed`."""
    if not _ALLOWED.get():
        raise ModelFileError(f"this model holds a skops file: {UPGRADE_HINT}")
    try:
        import skops.io as sio
    except ImportError:
        raise ModelFileError("reading an old model needs skops: pip install 'polyhead[legacy]'") from None
    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:  # skops raises assorted errors on damaged archives
        raise ModelFileError(f"model file cannot be read: {type(exc).__name__}: {exc}") from None
    refused = sorted(set(untrusted) - TRUSTED_TYPES)
    if refused:
        raise ModelFileError(f"model file asks to load untrusted types: {', '.join(refused[:5])}")
    try:
        return sio.loads(data, trusted=list(untrusted))
    except Exception as exc:
        raise ModelFileError(f"model file cannot be loaded: {type(exc).__name__}: {exc}") from None


def upgrade(source: str | os.PathLike[str], target: str | os.PathLike[str], *,
            overwrite: bool = False) -> Path:
    """Load an old model directory (skops units allowed) and save it in today's format."""
    from ..persistence import load, save

    with skops_allowed():
        model = load(source)
    return save(model, target, overwrite=overwrite)
