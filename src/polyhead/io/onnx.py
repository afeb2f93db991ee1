"""A fitted model as one ONNX graph: encoder, network (or tree and linear models), decoding.

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
exporter; class positions mapped to labels with ``Gather``. MultiTaskForest and
MultiTaskLinear: each fitted scikit-learn unit converted by skl2onnx, its outputs cut into
slots, each kind's :meth:`~polyhead.kinds.Kind.onnx_from_slots` decoding them. onnxruntime runs it; polyhead does
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

from .._optional import require
from ..exceptions import PolyheadError

OPSET = 20  # string Equal (opset 19+) for categorical inputs
_PREFIX = "polyhead/"
#: the key of the model's metadata_props that holds what a runtime needs (tasks, features)
METADATA_KEY = "polyhead"


def _require() -> Any:
    return require("onnx", "onnx", "ONNX export")


#: the estimators that export (forest and linear through skl2onnx, unit by unit)
EXPORTABLE = ("MultiTaskNet", "MultiTaskForest", "MultiTaskLinear")
EXPORTABLE_WHY = {"MultiTaskGBM": "skl2onnx (1.20) fails on scikit-learn 1.9's HistGradientBoosting "
                                  "models at every ai.onnx.ml opset; "}


def check_exportable(model: Any) -> None:
    """One line naming what cannot be exported, before any work."""
    from sklearn.utils.validation import check_is_fitted

    name = type(model).__name__
    if name not in EXPORTABLE:
        raise PolyheadError(f"ONNX export is not supported for {name}: {EXPORTABLE_WHY.get(name, '')}"
                            f"exportable: {', '.join(EXPORTABLE)}")
    check_is_fitted(model, "module_" if name == "MultiTaskNet" else "units_")
    if getattr(model, "twins_", None) is not None:
        raise PolyheadError("ONNX export is not supported for a network that recalls exact twins "
                            f"(twins_ for {', '.join(model.twins_.alphas)}); refit with twins='none'")
    from ..kinds.base import Kind

    for t in model.task_states_:
        if t.task.given is not None:
            raise PolyheadError(f"ONNX export is not supported for conditional tasks: task "
                                f"{t.name!r} has given={t.task.given!r}")
        if name != "MultiTaskNet" and type(t).onnx_from_slots is Kind.onnx_from_slots:
            t.onnx_from_slots(None, {})  # the kind's own line: the units have no decoding for it
    for col in model.features_.columns_:
        if col["type"] == "numeric" and col.get("transform", "standard") not in (
                "standard", "clipped", "robust", "none"):
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
        self.n_encoder = 0  # nodes before this position run before the converted parts

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
    if transform == "none":  # trees: the value itself, a missing one filled
        return [b.op("Where", [nan, b.const(np.float32(col["fill"])), x])] + (
            [b.op("Cast", [nan], to=1)] if col["indicator"] else [])
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
    """The ONNX ModelProto of a fitted MultiTaskNet, MultiTaskForest or MultiTaskLinear (see
    the module docstring)."""
    onnx = _require()
    from onnx import TensorProto, helper

    check_exportable(model)
    states = model.task_states_
    b = _Builder()
    inputs, pieces = [], []
    for col in model.features_.columns_:
        name = col["name"]
        numeric = col["type"] == "numeric"
        inputs.append(helper.make_tensor_value_info(
            name, TensorProto.FLOAT if numeric else TensorProto.STRING, ["N", 1]))
        pieces += _numeric(b, col, name) if numeric else _categorical(b, col, name)
    features = f"{_PREFIX}net/features"
    b.nodes.append(helper.make_node("Concat", pieces, [features], name=f"{_PREFIX}concat", axis=1))

    b.n_encoder = len(b.nodes)
    if type(model).__name__ == "MultiTaskNet":
        decoded, parts = _net_part(model)
    else:
        decoded, parts = _units_part(model, features, b)
    outputs = _decode(states, decoded, b)
    # encoder, then the converted parts (network or units), then slots and decoding
    inits, opsets, ir = list(b.inits), {"": OPSET}, 8
    ordered = b.nodes[:b.n_encoder] + [n for part in parts for n in part.graph.node] + b.nodes[b.n_encoder:]
    for part in parts:
        inits += list(part.graph.initializer)
        for op in part.opset_import:
            opsets[op.domain] = max(opsets.get(op.domain, 0), op.version)
        ir = max(ir, part.ir_version)
    graph = helper.make_graph(ordered, "polyhead", inputs, outputs, initializer=inits)
    merged = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()],
                               producer_name="polyhead")
    merged.ir_version = ir
    from ..persistence import _json_default, _json_safe

    helper.set_model_props(merged, {METADATA_KEY: json.dumps(_json_safe(_metadata(model)),
                                                             default=_json_default)})
    onnx.checker.check_model(merged)
    return merged


def _net_part(model: Any) -> tuple[dict[str, tuple[str, str | None]], list[Any]]:
    from onnx import compose

    names: list[str] = []
    for t in model.task_states_:
        names.append(f"out{len(names)}")
        if t.has_proba:
            names.append(f"out{len(names)}")
    net = compose.add_prefix(_network_graph(model, names), prefix=f"{_PREFIX}net/")
    decoded, position = {}, 0
    for t in model.task_states_:
        value = f"{_PREFIX}net/{names[position]}"
        position += 1
        proba = None
        if t.has_proba:
            proba = f"{_PREFIX}net/{names[position]}"
            position += 1
        decoded[t.name] = (value, proba)
    return decoded, [net]


def _units_part(model: Any, features: str, b: _Builder) -> tuple[dict[str, tuple[str, str | None]], list[Any]]:
    """The tree or linear family: each fitted unit through skl2onnx, its outputs cut into
    slots (class probabilities aligned to every class), then each kind's decoding."""
    from onnx import TensorProto, compose

    from ..models.sklearn_base import ConstantUnit

    by_key = {s[0]: s for s in model.slots_}
    shrunk = getattr(model, "shrinkage_", {})
    slots: dict[str, str] = {}
    parts = []
    width = model.features_.n_outputs_
    zero = b.op("Mul", [b.op("Slice", [features, b.const(np.array([0])), b.const(np.array([1])),
                                       b.const(np.array([1]))]), b.const(np.float32(0.0))])  # [N, 1]
    for i, (keys, unit) in enumerate(model.units_):
        info = [by_key[k] for k in keys]
        if isinstance(unit, ConstantUnit):
            row = np.zeros((1, unit.n_classes), dtype=np.float32)
            row[0, unit.code] = 1.0
            slots[keys[0]] = b.op("Add", [zero, b.const(row)])
            continue
        graph = compose.add_prefix(_convert_unit(unit, width), prefix=f"{_PREFIX}unit{i}/")
        parts.append(graph)
        b.nodes.insert(b.n_encoder, _identity(features, graph.graph.input[0].name))
        b.n_encoder += 1
        out = {o.name.split("/")[-1]: o.name for o in graph.graph.output}
        if info[0][2] != "classification":
            values = out["variable"]
            for j, key in enumerate(keys):
                column = b.op("Gather", [values, b.const(np.int64(j))], axis=1)
                if key in shrunk:  # mean + factor * (column - mean), as shrinkage.apply
                    factor, mean = shrunk[key]
                    column = b.op("Add", [b.op("Mul", [column, b.const(np.float32(factor))]),
                                          b.const(np.float32(mean * (1 - factor)))])
                slots[key] = column
            continue
        probabilities = out["probabilities"]
        classes = unit.classes_ if isinstance(unit.classes_, list) else [unit.classes_]
        for j, (key, cls) in enumerate(zip(keys, classes, strict=True)):
            p = probabilities if len(keys) == 1 else b.op("Gather", [probabilities, b.const(np.int64(j))], axis=0)
            p = b.op("Slice", [p, b.const(np.array([0])), b.const(np.array([len(cls)])), b.const(np.array([1]))])
            align = np.zeros((len(cls), by_key[key][3]), dtype=np.float32)
            align[np.arange(len(cls)), np.asarray(cls, dtype=int)] = 1.0
            slots[key] = b.op("MatMul", [b.op("Cast", [p], to=TensorProto.FLOAT), b.const(align)])
    decoded = {t.name: t.onnx_from_slots(b, slots) for t in model.task_states_}
    return decoded, parts


def _identity(source: str, target: str) -> Any:
    from onnx import helper

    return helper.make_node("Identity", [source], [target], name=f"{target}/feed")


def _convert_unit(unit: Any, width: int) -> Any:
    require("skl2onnx", "onnx", "exporting a tree or linear model")
    from skl2onnx import to_onnx as skl_to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    options = {id(unit): {"zipmap": False}} if hasattr(unit, "predict_proba") else None
    try:
        return skl_to_onnx(unit, initial_types=[("X", FloatTensorType([None, width]))],
                           options=options, target_opset={"": OPSET, "ai.onnx.ml": 3})
    except Exception as exc:  # skl2onnx's own message, in one line
        raise PolyheadError(f"ONNX export is not supported for {type(unit).__name__} "
                            f"(skl2onnx: {' '.join(str(exc).split())[:200]})") from None


def _decode(states: list[Any], decoded: dict[str, tuple[str, str | None]], b: _Builder) -> list[Any]:
    """Graph outputs: labels through Gather for class kinds, values as they are, and
    probabilities, each under its task's name."""
    from onnx import TensorProto, helper

    outputs = []
    for t in states:
        value, proba = decoded[t.name]
        classes = t.classes
        if classes is not None:
            array = classes.astype(np.int64) if classes.dtype.kind in "iu" else (
                classes if classes.dtype.kind in "bf" else classes.astype(object))
            labels = b.const(array, "classes")
            b.nodes.append(helper.make_node("Gather", [labels, value], [t.name], axis=0,
                                            name=f"{_PREFIX}labels/{t.name}"))
            kind = {"b": TensorProto.BOOL, "i": TensorProto.INT64,
                    "f": TensorProto.DOUBLE}.get(array.dtype.kind, TensorProto.STRING)
            outputs.append(helper.make_tensor_value_info(t.name, kind, ["N"]))
        else:
            b.nodes.append(helper.make_node("Identity", [value], [t.name], name=f"{_PREFIX}value/{t.name}"))
            multilabel = t.has_proba
            shape: list[str | int | None] = (["N"] if len(t.output_columns) == 1 and not multilabel
                                             else ["N", len(t.output_columns)])
            outputs.append(helper.make_tensor_value_info(
                t.name, TensorProto.INT64 if multilabel else TensorProto.FLOAT, shape))
        if proba is not None:
            b.nodes.append(helper.make_node("Identity", [proba], [f"{t.name}_proba"],
                                            name=f"{_PREFIX}proba/{t.name}"))
            width = len(classes) if classes is not None else len(t.output_columns)
            outputs.append(helper.make_tensor_value_info(f"{t.name}_proba", TensorProto.FLOAT,
                                                         ["N", width]))
    return outputs


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
            column = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float32, na_value=np.nan)
        out[name] = graph_input(col, column)
    return out


def graph_input(col: dict[str, Any], values: Any) -> np.ndarray:
    """One feature's values (a list, an array or a Series; None, NaN or NA for missing) as the
    graph's ``[N, 1]`` input: float32 for a numeric column, ``str(value)`` or ``""`` for a
    categorical one."""
    import pandas as pd

    if col["type"] == "numeric":
        return np.asarray(values, dtype=np.float32).reshape(-1, 1)
    items = values.tolist() if hasattr(values, "tolist") else values
    text = ["" if v is None or v is pd.NA or (isinstance(v, float) and v != v) else str(v)
            for v in items]
    return np.asarray(text, dtype=object).reshape(-1, 1)
