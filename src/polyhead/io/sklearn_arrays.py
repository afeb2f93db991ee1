"""scikit-learn models as arrays: how polyhead stores its tree and linear sub-models.

A fitted model becomes one safetensors file: its numeric arrays (tree nodes, thresholds, leaf
values, coefficients) as tensors, and a JSON header naming its type, its parameters and its
small attributes. Loading rebuilds the model from an allow-list of types (:data:`CODECS`):
nothing in the file names code to run, and every tree is checked (children after their parent,
features in range) before scikit-learn's compiled code walks it, so a damaged or hostile file
is a :class:`~polyhead.ModelFileError`, never a crash or a hang. No pickle, no skops.

>>> import numpy as np
>>> from sklearn.ensemble import RandomForestRegressor
>>> X = np.arange(40.0).reshape(20, 2)
>>> model = RandomForestRegressor(n_estimators=3, random_state=0).fit(X, X[:, 0])
>>> again = loads(dumps(model))
>>> bool(np.array_equal(again.predict(X), model.predict(X)))
True
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

from ..exceptions import ModelFileError, PolyheadError

#: linear models: rebuilt from their parameters and fitted arrays (``coef_``, ``intercept_``...)
LINEAR = frozenset({
    "LinearRegression", "Ridge", "Lasso", "ElasticNet", "MultiTaskElasticNet", "MultiTaskLasso",
    "LogisticRegression", "PoissonRegressor", "GammaRegressor",
    "TweedieRegressor", "QuantileRegressor", "HuberRegressor",
})
#: single trees and forests of them: node arrays
TREES = frozenset({"DecisionTreeRegressor", "DecisionTreeClassifier",
                   "ExtraTreeRegressor", "ExtraTreeClassifier"})
FORESTS = frozenset({"RandomForestRegressor", "RandomForestClassifier",
                     "ExtraTreesRegressor", "ExtraTreesClassifier"})
#: histogram gradient boosting: predictor node arrays and the baseline
HIST = frozenset({"HistGradientBoostingRegressor", "HistGradientBoostingClassifier"})
SUPPORTED = LINEAR | TREES | FORESTS | HIST

_MODULES = {**{n: "sklearn.linear_model" for n in LINEAR}, **{n: "sklearn.tree" for n in TREES},
            **{n: "sklearn.ensemble" for n in FORESTS | HIST}}
_ATTRIBUTE = re.compile(r"[a-z][a-z0-9_]*_")  # a public fitted attribute: coef_, classes_
_TREE_FIELDS = ("left_child", "right_child", "feature", "threshold", "impurity",
                "n_node_samples", "weighted_n_node_samples", "missing_go_to_left")
_HIST_FIELDS = ("value", "count", "feature_idx", "num_threshold", "missing_go_to_left", "left",
                "right", "gain", "depth", "is_leaf", "bin_threshold", "is_categorical",
                "bitset_idx")
_KEY = "polyhead_sklearn"


def dumps(model: Any) -> bytes:
    """A fitted scikit-learn model of a :data:`SUPPORTED` type as safetensors bytes."""
    from safetensors.numpy import save

    meta, arrays = to_arrays(model)
    return save({k: np.ascontiguousarray(v) for k, v in arrays.items()},
                metadata={_KEY: json.dumps(meta)})


def loads(data: bytes) -> Any:
    """The model :func:`dumps` wrote; a :class:`ModelFileError` for anything else."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    try:
        arrays = load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + header_len])
        meta = json.loads(header["__metadata__"][_KEY])
    except (SafetensorError, ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f"a scikit-learn unit cannot be read ({type(exc).__name__})") from None
    return from_arrays(meta, arrays)


# -- writing -------------------------------------------------------------------------------------
def to_arrays(model: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    name = type(model).__name__
    if name not in SUPPORTED or type(model).__module__.split(".")[0] != "sklearn":
        raise PolyheadError(
            f"{name} cannot be saved: polyhead stores scikit-learn models as arrays, not pickle, "
            f"and knows these: {', '.join(sorted(SUPPORTED))}")
    meta: dict[str, Any] = {"type": name, "params": _params(model)}
    arrays: dict[str, np.ndarray] = {}
    if name in FORESTS:
        meta["tree_params"] = _params(model.estimators_[0])
        meta["attributes"] = _attributes(model, arrays, skip={"estimators_", "estimator_"})
        _trees_to_arrays([t.tree_ for t in model.estimators_], model.estimators_[0], meta, arrays)
    elif name in TREES:
        meta["attributes"] = _attributes(model, arrays, skip={"tree_"})
        _trees_to_arrays([model.tree_], model, meta, arrays)
    elif name in HIST:
        if model.is_categorical_ is not None:
            raise PolyheadError(f"{name} with categorical features cannot be saved")
        meta["attributes"] = _attributes(model, arrays, skip={"train_score_", "validation_score_"})
        meta["n_trees_per_iteration"] = int(model.n_trees_per_iteration_)
        arrays["baseline"] = np.asarray(model._baseline_prediction, dtype=np.float64)
        predictors = [p for iteration in model._predictors for p in iteration]
        nodes = [p.nodes for p in predictors]
        meta["node_counts"] = [len(n) for n in nodes]
        for field in _HIST_FIELDS:
            arrays[f"nodes.{field}"] = np.concatenate([n[field] for n in nodes])
    else:
        meta["attributes"] = _attributes(model, arrays)
    return meta, arrays


def _params(model: Any) -> dict[str, Any]:
    params = model.get_params(deep=False)
    try:
        if json.loads(json.dumps(params)) != params:
            raise TypeError
    except (TypeError, ValueError):
        odd = [k for k, v in params.items() if not isinstance(v, (str, int, float, bool, type(None)))]
        raise PolyheadError(f"{type(model).__name__} cannot be saved: parameters {odd} are not "
                            "plain values") from None
    return params


def _attributes(model: Any, arrays: dict[str, np.ndarray], skip: frozenset[str] | set[str] = frozenset(),
                prefix: str = "attr.") -> dict[str, Any]:
    """Public fitted attributes: numeric arrays as tensors, the rest as JSON."""
    out: dict[str, Any] = {}
    for key, value in vars(model).items():
        if not _ATTRIBUTE.fullmatch(key) or key in skip:
            continue
        if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
            arrays[f"{prefix}{key}"] = value
            out[key] = {"array": str(value.dtype)}
        elif isinstance(value, list) and all(isinstance(v, np.ndarray) for v in value):
            out[key] = {"arrays": [v.tolist() for v in value], "dtype": [str(v.dtype) for v in value]}
        elif isinstance(value, np.ndarray):
            out[key] = {"objects": value.tolist()}
        elif isinstance(value, (np.integer, np.floating, np.bool_)):
            out[key] = {"value": value.item()}
        elif isinstance(value, (str, int, float, bool, type(None))) or (
                isinstance(value, list) and all(isinstance(v, (int, float, str)) for v in value)):
            out[key] = {"value": value}
        else:
            raise PolyheadError(f"{type(model).__name__}.{key} ({type(value).__name__}) cannot be "
                                "saved as arrays")
    return out


def _trees_to_arrays(trees: list[Any], first: Any, meta: dict[str, Any],
                     arrays: dict[str, np.ndarray]) -> None:
    meta["n_features"] = int(trees[0].n_features)
    meta["n_classes"] = [int(c) for c in trees[0].n_classes]
    meta["n_outputs"] = int(trees[0].n_outputs)
    meta["node_counts"] = [int(t.node_count) for t in trees]
    meta["max_depths"] = [int(t.max_depth) for t in trees]
    states = [t.__getstate__() for t in trees]
    for field in _TREE_FIELDS:
        arrays[f"nodes.{field}"] = np.concatenate([s["nodes"][field] for s in states])
    arrays["values"] = np.concatenate([s["values"] for s in states])
    meta["tree_attributes"] = _attributes(first, arrays, skip={"tree_"}, prefix="tree_attr.")


# -- reading -------------------------------------------------------------------------------------
def from_arrays(meta: Any, arrays: dict[str, np.ndarray]) -> Any:
    if not isinstance(meta, dict) or meta.get("type") not in SUPPORTED:
        kind = meta.get("type") if isinstance(meta, dict) else None
        raise ModelFileError(f"a scikit-learn unit names an unknown type {kind!r}")
    name = meta["type"]
    try:
        model = _new(name, meta.get("params"))
        _set_attributes(model, meta.get("attributes"), arrays)
        if name in FORESTS:
            trees = _trees_from_arrays(meta, arrays)
            model.estimators_ = []
            for tree in trees:
                est = _new(name.replace("RandomForest", "DecisionTree").replace(
                    "ExtraTrees", "ExtraTree"), meta.get("tree_params"))
                _set_attributes(est, meta.get("tree_attributes"), arrays, "tree_attr.")
                est.tree_ = tree
                model.estimators_.append(est)
            model.estimator_ = model.estimators_[0]
            model.n_estimators = len(trees)
        elif name in TREES:
            (model.tree_,) = _trees_from_arrays(meta, arrays)
        elif name in HIST:
            _hist_from_arrays(model, meta, arrays)
        elif hasattr(model, "_get_loss") and name in ("PoissonRegressor", "GammaRegressor",
                                                       "TweedieRegressor"):
            model._base_loss = model._get_loss()
    except ModelFileError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as exc:
        raise ModelFileError(f"a {name} unit is malformed ({type(exc).__name__}: {exc})") from None
    return model


def _new(name: str, params: Any) -> Any:
    import importlib

    if not isinstance(params, dict):
        raise ModelFileError(f"a {name} unit has no parameters")
    cls = getattr(importlib.import_module(_MODULES[name]), name)
    unknown = set(params) - set(cls().get_params(deep=False))
    if unknown:
        raise ModelFileError(f"a {name} unit has unknown parameters {sorted(unknown)}")
    model = cls(**params)
    try:
        model._validate_params()
    except (ValueError, TypeError) as exc:
        raise ModelFileError(f"a {name} unit has invalid parameters: {exc}") from None
    return model


def _set_attributes(model: Any, attributes: Any, arrays: dict[str, np.ndarray],
                    prefix: str = "attr.") -> None:
    if not isinstance(attributes, dict):
        raise ModelFileError(f"a {type(model).__name__} unit has no attributes")
    for key, spec in attributes.items():
        if not (isinstance(key, str) and _ATTRIBUTE.fullmatch(key) and isinstance(spec, dict)):
            raise ModelFileError(f"a {type(model).__name__} unit has an invalid attribute {key!r}")
        if "array" in spec:
            value: Any = arrays[f"{prefix}{key}"]
            if value.dtype.kind not in "biuf":
                raise ModelFileError(f"attribute {key} is not numeric")
        elif "arrays" in spec:
            value = [np.asarray(v, dtype=_dtype(d)) for v, d in zip(spec["arrays"], spec["dtype"], strict=True)]
        elif "objects" in spec:
            value = np.asarray(spec["objects"], dtype=object)
        else:
            value = spec["value"]
        setattr(model, key, value)


def _dtype(text: Any) -> np.dtype:
    if not (isinstance(text, str) and re.fullmatch(r"(bool|u?int(8|16|32|64)|float(16|32|64)|object|<U\d{1,6})", text)):
        raise ModelFileError(f"invalid dtype {text!r}")
    return np.dtype(text)


def _counts(meta: dict[str, Any], total: int) -> list[int]:
    counts = meta.get("node_counts")
    if not (isinstance(counts, list) and counts and all(isinstance(c, int) and c > 0 for c in counts)
            and sum(counts) == total):
        raise ModelFileError("tree node counts do not match the node arrays")
    return counts


def _check_children(left: np.ndarray, right: np.ndarray, leaf: np.ndarray, feature: np.ndarray,
                    n_features: int) -> None:
    """Every internal node's children come after it and exist, and it splits on a real
    feature: no out-of-bounds read and no cycle when compiled code walks the tree."""
    index = np.arange(len(left))
    inner = ~leaf
    ok = ((left[inner] > index[inner]) & (left[inner] < len(left))
          & (right[inner] > index[inner]) & (right[inner] < len(left))
          & (feature[inner] >= 0) & (feature[inner] < n_features))
    if not ok.all():
        raise ModelFileError("a tree's nodes are inconsistent (children or features out of range)")


def _trees_from_arrays(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> list[Any]:
    from sklearn.tree._tree import NODE_DTYPE, Tree

    n_features, n_outputs = meta.get("n_features"), meta.get("n_outputs")
    n_classes = meta.get("n_classes")
    if not (isinstance(n_features, int) and 0 < n_features < 10**7 and isinstance(n_outputs, int)
            and 0 < n_outputs < 10**5 and isinstance(n_classes, list) and len(n_classes) == n_outputs
            and all(isinstance(c, int) and 0 < c < 10**6 for c in n_classes)):
        raise ModelFileError("a tree's shape (features, outputs, classes) is invalid")
    fields = {f: arrays[f"nodes.{f}"] for f in _TREE_FIELDS}
    values = arrays["values"]
    total = len(fields["left_child"])
    if any(len(v) != total for v in fields.values()) or values.shape != (total, n_outputs, max(n_classes)):
        raise ModelFileError("a tree's node arrays differ in length")
    counts = _counts(meta, total)
    depths = meta.get("max_depths")
    if not (isinstance(depths, list) and len(depths) == len(counts)
            and all(isinstance(d, int) and 0 <= d < 10**4 for d in depths)):
        raise ModelFileError("a tree's depths are invalid")
    trees, start = [], 0
    for count, depth in zip(counts, depths, strict=True):
        nodes = np.zeros(count, dtype=NODE_DTYPE)
        for f in _TREE_FIELDS:
            nodes[f] = fields[f][start:start + count]
        _check_children(nodes["left_child"], nodes["right_child"], nodes["left_child"] == -1,
                        nodes["feature"], n_features)
        if not ((nodes["left_child"] == -1) == (nodes["right_child"] == -1)).all():
            raise ModelFileError("a tree node has one child")
        tree = Tree(n_features, np.asarray(n_classes, dtype=np.intp), n_outputs)
        tree.__setstate__({"max_depth": depth, "node_count": count, "nodes": nodes,
                           "values": np.ascontiguousarray(values[start:start + count], dtype=np.float64)})
        trees.append(tree)
        start += count
    return trees


def _hist_from_arrays(model: Any, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    from sklearn.ensemble._hist_gradient_boosting.binning import _BinMapper
    from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor

    n_features = model.n_features_in_
    per = meta.get("n_trees_per_iteration")
    if not (isinstance(n_features, int) and n_features > 0 and isinstance(per, int) and per > 0):
        raise ModelFileError("a HistGradientBoosting unit's shape is invalid")
    fields = {f: arrays[f"nodes.{f}"] for f in _HIST_FIELDS}
    total = len(fields["left"])
    if any(len(v) != total for v in fields.values()):
        raise ModelFileError("a HistGradientBoosting unit's node arrays differ in length")
    counts = _counts(meta, total)
    if len(counts) % per:
        raise ModelFileError("a HistGradientBoosting unit's trees do not fill its iterations")
    if (fields["is_categorical"] != 0).any():
        raise ModelFileError("a HistGradientBoosting unit has categorical splits")
    predictors, start = [], 0
    for count in counts:
        nodes = np.zeros(count, dtype=PREDICTOR_RECORD_DTYPE)
        for f in _HIST_FIELDS:
            nodes[f] = fields[f][start:start + count]
        leaf = nodes["is_leaf"].astype(bool)
        _check_children(nodes["left"].astype(np.int64), nodes["right"].astype(np.int64), leaf,
                        nodes["feature_idx"], n_features)
        empty = np.zeros((0, 8), dtype=np.uint32)
        predictors.append(TreePredictor(nodes, empty, empty))
        start += count
    model._predictors = [predictors[i:i + per] for i in range(0, len(predictors), per)]
    baseline = arrays["baseline"]
    if baseline.shape != (1, per):
        raise ModelFileError("a HistGradientBoosting unit's baseline has the wrong shape")
    model._baseline_prediction = baseline.astype(np.float64)
    model.n_trees_per_iteration_ = per
    model.is_categorical_ = None
    model._preprocessor = None
    mapper = _BinMapper()
    mapper.is_categorical_ = np.zeros(n_features, dtype=np.uint8)
    mapper.bin_thresholds_ = []
    mapper.missing_values_bin_idx_ = model.max_bins
    model._bin_mapper = mapper
    model._loss = model._get_loss(sample_weight=None)
