"""MLflow flavour: log a polyhead model to a run, load it back, or load it as a pyfunc.

The model is stored as polyhead's own directory (JSON + safetensors, no pickle) inside the
MLflow model; MLflow's ``python_function`` flavour points at :func:`_load_pyfunc` of this module
(``loader_module``), so ``mlflow.pyfunc.load_model(uri).predict(frame)`` gives the same
DataFrame as ``model.predict(frame)`` without MLflow ever pickling anything. Needs
``pip install 'polyhead[mlflow]'`` (``mlflow`` or ``mlflow-skinny``).

>>> import polyhead.mlflow                                     # doctest: +SKIP
>>> with mlflow.start_run():                                   # doctest: +SKIP
...     info = polyhead.mlflow.log_model(model, name="model")
>>> again = polyhead.mlflow.load_model(info.model_uri)         # doctest: +SKIP
>>> mlflow.pyfunc.load_model(info.model_uri).predict(X)        # doctest: +SKIP
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from ._optional import require

FLAVOR_NAME = "polyhead"
_DATA = "polyhead_model"


def _mlflow() -> Any:
    return require("mlflow", "mlflow", "the MLflow flavour")


def save_model(polyhead_model: Any, path: str | os.PathLike[str], *, mlflow_model: Any = None,
               **kwargs: Any) -> None:
    """Write ``polyhead_model`` as an MLflow model directory at ``path`` (which must not
    exist, as MLflow requires). ``kwargs`` go to ``mlflow.pyfunc.save_model`` (signature,
    input_example, pip_requirements, metadata...)."""
    mlflow = _mlflow()
    from mlflow.models import Model

    from ._version import __version__

    mlflow_model = mlflow_model if mlflow_model is not None else Model()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / _DATA
        polyhead_model.save(data)
        kwargs.setdefault("pip_requirements", [f"polyhead=={__version__}"])
        mlflow.pyfunc.save_model(path=str(path), loader_module=__name__, data_path=str(data),
                                 mlflow_model=mlflow_model, **kwargs)
    mlflow_model.add_flavor(FLAVOR_NAME, polyhead_version=__version__, data=_DATA,
                            estimator=type(polyhead_model).__name__)
    mlflow_model.save(str(Path(path) / "MLmodel"))


def log_model(polyhead_model: Any, name: str = "model", **kwargs: Any) -> Any:
    """Log ``polyhead_model`` to the active run (one is started if none is); returns MLflow's
    ModelInfo (``.model_uri`` loads it)."""
    _mlflow()
    import sys

    from mlflow.models import Model

    return Model.log(artifact_path=None, name=name, flavor=sys.modules[__name__],
                     polyhead_model=polyhead_model, **kwargs)


def load_model(model_uri: str) -> Any:
    """The polyhead estimator logged at ``model_uri`` (``runs:/<id>/model``, a path...)."""
    _mlflow()
    from mlflow.artifacts import download_artifacts

    from .persistence import load

    local = Path(download_artifacts(artifact_uri=model_uri))
    return load(local / "data" / _DATA if (local / "data" / _DATA).exists() else local / _DATA)


class _PyfuncModel:
    """What ``mlflow.pyfunc.load_model`` wraps: ``predict(DataFrame) -> DataFrame``."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        import pandas as pd

        X = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return self.model.predict_frame(X)

    def get_raw_model(self) -> Any:
        return self.model


def _load_pyfunc(data_path: str) -> _PyfuncModel:
    from .persistence import load

    return _PyfuncModel(load(data_path))
