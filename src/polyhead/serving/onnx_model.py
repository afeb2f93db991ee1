"""A MultiTaskNet exported to ONNX, served by onnxruntime without importing torch.

:class:`OnnxModel` reads an ``.onnx`` file written by ``polyhead export`` (or
``MultiTaskNet.to_onnx``) and answers what the service asks of a model: the tasks (rebuilt from
the file's metadata, with their classes and kinds), the feature columns, ``predict_frame`` and
``predict_proba``, with the same columns and labels as the torch model. ``polyhead serve
model.onnx`` uses it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._optional import require
from ..exceptions import ModelFileError


class OnnxModel:
    """An exported network behind the model interface the service uses."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        ort = require("onnxruntime", "onnx", "serving an ONNX model")
        from ..features import FeatureEncoder
        from ..parallel import available_cpus
        from ..tasks import task_from_dict

        self.path = Path(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = available_cpus()  # never more than this process may use
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.path), options,
                                                providers=["CPUExecutionProvider"])
            meta = json.loads(self.session.get_modelmeta().custom_metadata_map["polyhead"])
            self.task_states_ = [task_from_dict(t) for t in meta["tasks"]]
            self._encoder = FeatureEncoder.from_dict(meta["features"])
            self._feature_columns = [str(c) for c in meta["feature_columns"]]
        except Exception as exc:  # a file that is not an export of ours: one line
            raise ModelFileError(f"{self.path} is not a polyhead ONNX export "
                                 f"({type(exc).__name__}: {exc})") from None
        self.manifest = {"polyhead_version": meta.get("polyhead_version"),
                         "format_version": "onnx", "estimator": meta.get("estimator")}
        self._outputs = [o.name for o in self.session.get_outputs()]

    def feature_encoder(self) -> Any:
        return self._encoder

    def _run(self, X: pd.DataFrame) -> dict[str, np.ndarray]:
        from ..io.onnx import feeds

        values = self.session.run(None, feeds(X, self._encoder.columns_))
        return dict(zip(self._outputs, values, strict=True))

    def predict_frame(self, X: pd.DataFrame, proba: bool = False) -> pd.DataFrame:
        """One column per task output, as ``MultiTaskNet.predict`` gives them."""
        got = self._run(X)
        columns: dict[str, Any] = {}
        for t in self.task_states_:
            value = got[t.name]
            names = t.output_columns
            if len(names) == 1:
                columns[names[0]] = value.reshape(len(X))
            else:
                for j, name in enumerate(names):
                    columns[name] = value[:, j]
        return pd.DataFrame(columns, index=X.index)

    def predict_proba(self, X: pd.DataFrame) -> dict[str, pd.DataFrame]:
        got = self._run(X)
        out = {}
        for t in self.task_states_:
            if t.has_proba:
                names = t.output_columns if t.classes is None else t.classes.tolist()
                out[t.name] = pd.DataFrame(got[f"{t.name}_proba"].astype(np.float64),
                                           index=X.index, columns=names)
        return out

    # -- the service's fast path: lists in, JSON-ready rows out, no DataFrame -------------------
    def predict_columns(self, columns: dict[str, list[Any]], proba: bool = False
                        ) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
        """Per row, the prediction columns (and with ``proba``, each class task's
        probabilities by class), from a column -> values mapping (None: missing)."""
        from ..io.onnx import graph_input

        inputs = {col["name"]: graph_input(col, columns[col["name"]]) for col in self._encoder.columns_}
        got = dict(zip(self._outputs, self.session.run(None, inputs), strict=True))
        n = len(next(iter(inputs.values())))
        rows: list[dict[str, Any]] = [{} for _ in range(n)]
        probabilities: list[dict[str, Any]] | None = [{} for _ in range(n)] if proba else None
        for t in self.task_states_:
            value = got[t.name]
            names = t.output_columns
            per_column = ([value.reshape(n).tolist()] if len(names) == 1
                          else [value[:, j].tolist() for j in range(len(names))])
            for name, values in zip(names, per_column, strict=True):
                for row, v in zip(rows, values, strict=True):
                    row[name] = None if isinstance(v, float) and v != v else v
            if probabilities is not None and t.has_proba:
                keys = [str(c) for c in (t.output_columns if t.classes is None else t.classes.tolist())]
                for row, p in zip(probabilities, got[f"{t.name}_proba"].tolist(), strict=True):
                    row[t.name] = dict(zip(keys, p, strict=True))
        return rows, probabilities
