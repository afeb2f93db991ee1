"""A fitted :class:`~polyhead.MultiTaskNet` as one ONNX graph: encoder, network, decoding.

The graph reads one input per feature column, named as the column and shaped ``[N, 1]``:
float32 for numeric columns (NaN is a missing value) and string for categorical ones
(``str(value)``; the empty string is a missing value, a category never seen at fit is
"unseen" exactly as in Python). It writes, per task, ``{task}``: the prediction in the trained
label type (values ``[N]``, or ``[N, k]`` for a multilabel or quantile task) and, for class
kinds, ``{task}_proba`` (``[N, n_classes]``, or ``[N, n_labels]``).

How it is built: the encoder (scaling, clipping, missing indicators, capped one-hot with its
"other" and "missing" slots, category codes for embeddings) from ONNX operators with
``onnx.helper``; the network (numeric embeddings, the trunk or experts, every head, ensemble
averaging, per-task best epochs, each kind's output and decoding) through torch's ONNX
exporter; class positions mapped to labels with ``Gather``. onnxruntime runs it; polyhead does
not re-implement a runtime. Needs ``pip install 'polyhead[onnx]'``.
"""

from __future__ import annotations

import copy
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import PolyheadError

OPSET = 20  # string Equal (opset 19+) for categorical inputs
_PREFIX = "polyhead/"
#: the key of the model's metadata_props that holds what a runtime needs (tasks, features)
METADATA_KEY = "polyhead"


def _require() -> Any:
    try:
        import onnx
    except ImportError:
        raise ImportError("ONNX export needs the onnx package: pip install 'polyhead[onnx]'") from None
    return onnx


def check_exportable(model: Any) -> None:
    """One line naming what cannot be exported, before any work."""
    from sklearn.utils.validation import check_is_fitted

    if type(model).__name__ != "MultiTaskNet":
        raise PolyheadError(f"ONNX export is not supported for {type(model).__name__}: only "
                            "MultiTaskNet exports (its graph includes the feature encoder)")
    check_is_fitted(model, "module_")
    for t in model.task_states_:
        if t.task.given is not None:
            raise PolyheadError(f"ONNX export is not supported for conditional tasks: task "
                                f"{t.name!r} has given={t.task.given!r}")
    for col in model.features_.columns_:
        if col["type"] == "numeric" and col.get("transform", "standard") not in (
                "standard", "clipped", "robust"):
            raise PolyheadError(f"ONNX export is not supported for numeric={col['transform']!r} "
                                f"(column {col['name']!r}); use standard, clipped or robust")


# -- the network --------------------------------------------------------------------------------
def _network(model: Any) -> Any:
    """A torch module: encoded features -> per task (prediction, probabilities)."""
    import torch

    class Exported(torch.nn.Module):
        def __init__(self, groups: list[tuple[Any, list[Any]]], k: int, order: list[str]) -> None:
            super().__init__()
            self.modules_ = torch.nn.ModuleList([m for m, _ in groups])
            self.states = [s for _, s in groups]
            self.k, self.order = k, order

        def forward(self, x: Any) -> tuple[Any, ...]:
            decoded = {}
            for module, states in zip(self.modules_, self.states, strict=True):
                raw = module(x)
                for t in states:
                    outputs = t.output(raw[t.name])
                    if self.k > 1:
                        outputs = outputs.mean(dim=0)
                    decoded[t.name] = t.export_decode(outputs)
            flat = []
            for name in self.order:
                value, proba = decoded[name]
                flat.append(value.float() if value.is_floating_point() else value)
                if proba is not None:
                    flat.append(proba.float())
            return tuple(flat)

    base = copy.deepcopy(model.module_).cpu().float().eval()
    snapshots = getattr(model, "_snapshots", {})
    by_epoch: dict[int, list[Any]] = {}
    for t in model.task_states_:
        epoch = getattr(model, "task_best_epochs_", {}).get(t.name, -1)
        by_epoch.setdefault(epoch if epoch in snapshots else -1, []).append(t)
    groups = []
    for epoch, states in by_epoch.items():
        module = base
        if epoch != -1:
            module = copy.deepcopy(base)
            module.load_state_dict({**base.state_dict(), **{k: torch.as_tensor(v) for k, v in
                                                            snapshots[epoch].items()}})
        groups.append((module, states))
    return Exported(groups, model.n_ensemble_, [t.name for t in model.task_states_]).eval()


def _network_graph(model: Any, outputs: list[str]) -> Any:
    import torch

    onnx = _require()
    net = _network(model)
    width = model.features_.n_outputs_
    example = torch.zeros(2, width)
    buffer = io.BytesIO()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (example,), buffer,  # type: ignore[arg-type]
                          input_names=["features"], output_names=outputs,
                          dynamic_axes={"features": {0: "N"}, **{o: {0: "N"} for o in outputs}},
                          opset_version=OPSET, dynamo=False)
    return onnx.load_from_string(buffer.getvalue())


# -- the encoder --------------------------------------------------------------------------------
class _Builder:
    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self._n = 0

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{_PREFIX}{hint}_{self._n}"

    def const(self, value: Any, hint: str = "c") -> str:
        from onnx import numpy_helper

        name = self.name(hint)
        array = np.asarray(value)
        if array.dtype.kind in "OU":
            from onnx import TensorProto, helper

            flat = [str(v).encode() for v in array.ravel()]
            self.inits.append(helper.make_tensor(name, TensorProto.STRING, array.shape,
                                                 flat))  # type: ignore[arg-type]
        else:
            self.inits.append(numpy_helper.from_array(array, name))
        return name

    def op(self, kind: str, inputs: list[str], hint: str | None = None, **attrs: Any) -> str:
        from onnx import helper

        out = self.name(hint or kind.lower())
        self.nodes.append(helper.make_node(kind, inputs, [out], name=out, **attrs))
        return out


def _numeric(b: _Builder, col: dict[str, Any], x: str) -> list[str]:
    from ..features import _CLIP, CLIP_SIGMAS

    nan = b.op("IsNaN", [x])
    z = b.op("Div", [b.op("Sub", [x, b.const(np.float32(col["center"]))]),
                     b.const(np.float32(col["scale"]))])
    transform = col.get("transform", "standard")
    if transform == "clipped":
        sig = b.const(np.float32(CLIP_SIGMAS))
        z = b.op("Mul", [b.op("Tanh", [b.op("Div", [z, sig])]), sig])
    elif transform == "robust":  # z / sqrt(1 + (z / c)^2)
        q = b.op("Div", [z, b.const(np.float32(_CLIP))])
        z = b.op("Div", [z, b.op("Sqrt", [b.op("Add", [b.const(np.float32(1.0)),
                                                        b.op("Mul", [q, q])])])])
    out = [b.op("Where", [nan, b.const(np.float32(0.0)), z])]
    if col["indicator"]:
        out.append(b.op("Cast", [nan], to=1))
    return out


def _categorical(b: _Builder, col: dict[str, Any], x: str) -> list[str]:
    from onnx import TensorProto

    cats = [str(c) for c in col["categories"]]
    width = len(cats)
    missing = b.op("Equal", [x, b.const(np.array([[""]], dtype=object))])
    if cats:
        eq = b.op("Equal", [x, b.const(np.array([cats], dtype=object))])          # [N, K]
        known = b.op("Cast", [b.op("ReduceMax", [b.op("Cast", [eq], to=TensorProto.INT32),
                                                  b.const(np.array([1], dtype=np.int64))],
                                   keepdims=1)], to=TensorProto.BOOL)
    else:
        eq, known = None, b.op("Not", [b.op("Equal", [missing, missing])])        # all False
    missing_slot, other = bool(col["missing_slot"]), bool(col.get("other"))
    unknown = b.op("Not", [known])
    other_flag = b.op("And", [unknown, b.op("Not", [missing])]) if missing_slot else unknown
    if col.get("encoding") == "code":  # codes + 1, 0 for unseen (see FeatureEncoder.transform)
        code = b.op("Mul", [b.op("Cast", [missing], to=TensorProto.FLOAT), b.const(np.float32(0.0))])
        if eq is not None:
            position = b.op("Cast", [b.op("ArgMax", [b.op("Cast", [eq], to=TensorProto.INT32)],
                                          axis=1, keepdims=1)], to=TensorProto.FLOAT)
            code = b.op("Where", [known, b.op("Add", [position, b.const(np.float32(1.0))]), code])
        if other:
            code = b.op("Where", [other_flag, b.const(np.float32(width + 1)), code])
        if missing_slot:
            code = b.op("Where", [missing, b.const(np.float32(width + int(other) + 1)), code])
        return [code]
    parts = [b.op("Cast", [eq], to=TensorProto.FLOAT)] if eq is not None else []
    if other:
        parts.append(b.op("Cast", [other_flag], to=TensorProto.FLOAT))
    if missing_slot:
        parts.append(b.op("Cast", [missing], to=TensorProto.FLOAT))
    return parts


# -- the whole graph ----------------------------------------------------------------------------
def build(model: Any) -> Any:
    """The ONNX ModelProto of a fitted MultiTaskNet (see the module docstring)."""
    onnx = _require()
    from onnx import TensorProto, compose, helper

    check_exportable(model)
    states = model.task_states_
    net_outputs: list[str] = []
    for t in states:
        net_outputs.append(f"out{len(net_outputs)}")
        if t.has_proba:
            net_outputs.append(f"out{len(net_outputs)}")
    net = compose.add_prefix(_network_graph(model, net_outputs), prefix=f"{_PREFIX}net/")

    b = _Builder()
    inputs, pieces = [], []
    for col in model.features_.columns_:
        name = col["name"]
        numeric = col["type"] == "numeric"
        inputs.append(helper.make_tensor_value_info(
            name, TensorProto.FLOAT if numeric else TensorProto.STRING, ["N", 1]))
        pieces += _numeric(b, col, name) if numeric else _categorical(b, col, name)
    features = f"{_PREFIX}net/features"
    from onnx import helper as h

    b.nodes.append(h.make_node("Concat", pieces, [features], name=f"{_PREFIX}concat", axis=1))

    outputs, post = [], _Builder()
    position = 0
    for t in states:
        value = f"{_PREFIX}net/{net_outputs[position]}"
        position += 1
        classes = t.classes
        if classes is not None:
            labels = post.const(classes if classes.dtype.kind in "biuf" else classes.astype(object),
                                "classes")
            post.nodes.append(h.make_node("Gather", [labels, value], [t.name], axis=0,
                                          name=f"{_PREFIX}labels_{position}"))
            kind = {"b": TensorProto.BOOL, "i": TensorProto.INT64, "u": TensorProto.INT64,
                    "f": TensorProto.DOUBLE}.get(classes.dtype.kind, TensorProto.STRING)
            if classes.dtype.kind in "iu":
                post.inits[-1] = onnx.numpy_helper.from_array(classes.astype(np.int64), labels)
            outputs.append(helper.make_tensor_value_info(t.name, kind, ["N"]))
        else:
            post.nodes.append(h.make_node("Identity", [value], [t.name], name=f"{_PREFIX}value_{position}"))
            multilabel = t.has_proba
            shape: list[str | int | None] = (["N"] if len(t.output_columns) == 1 and not multilabel
                                             else ["N", len(t.output_columns)])
            outputs.append(helper.make_tensor_value_info(
                t.name, TensorProto.INT64 if multilabel else TensorProto.FLOAT, shape))
        if t.has_proba:
            proba = f"{_PREFIX}net/{net_outputs[position]}"
            position += 1
            post.nodes.append(h.make_node("Identity", [proba], [f"{t.name}_proba"],
                                          name=f"{_PREFIX}proba_{position}"))
            width = len(classes) if classes is not None else len(t.output_columns)
            outputs.append(helper.make_tensor_value_info(f"{t.name}_proba", TensorProto.FLOAT,
                                                         ["N", width]))
    graph = helper.make_graph(
        b.nodes + list(net.graph.node) + post.nodes, "polyhead", inputs, outputs,
        initializer=b.inits + list(net.graph.initializer) + post.inits)
    merged = helper.make_model(graph, opset_imports=list(net.opset_import),
                               producer_name="polyhead")
    merged.ir_version = net.ir_version
    from ..persistence import _json_default, _json_safe

    helper.set_model_props(merged, {METADATA_KEY: json.dumps(_json_safe(_metadata(model)),
                                                             default=_json_default)})
    onnx.checker.check_model(merged)
    return merged


def _metadata(model: Any) -> dict[str, Any]:
    from .._version import __version__

    return {"polyhead_version": __version__, "estimator": type(model).__name__,
            "tasks": [t.to_dict() for t in model.task_states_],
            "features": model.features_.to_dict(),
            "feature_columns": [str(c) for c in model._feature_columns]}


def to_onnx(model: Any, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write ``model`` as one ONNX file at ``path`` (atomically; an existing file only with
    ``overwrite=True``)."""
    from .paths import atomic_file, check_output

    _require()
    target = check_output(path, force=overwrite, option="overwrite=True", suffixes=(".onnx",))
    proto = build(model)
    with atomic_file(target) as tmp:
        Path(tmp).write_bytes(proto.SerializeToString())
    return target


def feeds(X: Any, features: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """A DataFrame as the graph's inputs: float32 ``[N, 1]`` per numeric column (NaN for
    missing), strings per categorical column (``str(value)``, ``""`` for missing)."""
    import pandas as pd

    out: dict[str, np.ndarray] = {}
    for col in features:
        name = col["name"]
        if name not in X.columns:
            raise PolyheadError(f"X is missing feature column {name!r}")
        column = X[name]
        if col["type"] == "numeric":
            values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float32, na_value=np.nan)
            out[name] = values.reshape(-1, 1)
        else:
            text = [("" if v is None or (isinstance(v, float) and v != v) or v is pd.NA else
                     str(v)) for v in column.tolist()]
            out[name] = np.asarray(text, dtype=object).reshape(-1, 1)
    return out
