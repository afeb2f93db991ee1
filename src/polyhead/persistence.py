"""Saving and loading fitted models: a JSON manifest plus ``weights.safetensors``. No pickle.

A model directory holds:

* ``manifest.json`` - format version, polyhead version, estimator class and parameters, tasks
  (with classes and target scales), feature encoder statistics, architecture, training history;
* ``weights.safetensors`` - every tensor, with the manifest's SHA-256 of the file, so a truncated
  or swapped weights file is caught before it is used.

Loading reads only JSON and safetensors and rebuilds objects from an allow-list of estimator
classes and loss-weighting names: a file can never make the loader execute code.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ._version import __version__
from .exceptions import ModelFileError
from .features import FeatureEncoder
from .tasks import Task, task_from_dict

FORMAT_VERSION = 3  # 3: scikit-learn units as arrays (no skops); 2: fitted tasks as kinds ("state"), the encoder's numeric transforms
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot store {type(value).__name__} in a model manifest")


def _params_to_json(estimator: Any) -> dict[str, Any]:
    return {key: (_tasks_to_json(value) if key == "tasks" else _value_to_json(value))
            for key, value in estimator.get_params(deep=False).items()}


def _value_to_json(value: Any) -> Any:
    """A parameter value as JSON; estimators (templates of composites) by class and params."""
    from sklearn.base import BaseEstimator

    from .nn.weighting import LossWeighting

    if isinstance(value, LossWeighting):
        return {"weighting": value.name, "config": value.get_config()}
    if isinstance(value, BaseEstimator):
        cls = type(value)
        return {"__estimator__": f"{cls.__module__}.{cls.__qualname__}",
                "params": {k: (_tasks_to_json(v) if k == "tasks" else _value_to_json(v))
                           for k, v in value.get_params(deep=False).items()}}
    if isinstance(value, dict):
        return {"__mapping__": [[k, _value_to_json(v)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return [_value_to_json(v) for v in value]
    return value


def _value_from_json(value: Any) -> Any:
    """Inverse of :func:`_value_to_json`. Only polyhead and scikit-learn estimator classes are
    ever constructed, by their registered or ``sklearn.*`` names: never arbitrary code."""
    import importlib

    from sklearn.base import BaseEstimator

    from .nn.weighting import WEIGHTINGS

    if isinstance(value, list):
        return [_value_from_json(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__mapping__" in value:
        return {k: _value_from_json(v) for k, v in value["__mapping__"]}
    if "weighting" in value and "config" in value:
        name = value.get("weighting")
        if name not in WEIGHTINGS:
            raise ModelFileError(f"unknown loss weighting {name!r} in manifest")
        return WEIGHTINGS[name](**value.get("config", {}))
    if "__estimator__" in value:
        path = str(value["__estimator__"])
        module, _, name = path.rpartition(".")
        registry = _registry()
        if module.startswith("polyhead.") and name in registry:
            cls: Any = registry[name]
        elif module == "sklearn" or module.startswith("sklearn."):
            cls = getattr(importlib.import_module(module), name, None)
            if not (isinstance(cls, type) and issubclass(cls, BaseEstimator)):
                raise ModelFileError(f"manifest names {path!r}, which is not an estimator")
        else:
            raise ModelFileError(f"manifest names estimator {path!r}, which is not allowed")
        params = {k: (_tasks_from_json(v) if k == "tasks" else _value_from_json(v))
                  for k, v in value["params"].items()}
        return cls(**_restore_params(params))
    return value


def _tasks_to_json(tasks: Any) -> Any:
    if tasks is None or isinstance(tasks, str):
        return tasks
    if isinstance(tasks, Task):
        return [tasks.to_dict()]
    if isinstance(tasks, dict):
        return {"__dict__": [[k, v.to_dict() if isinstance(v, Task) else v] for k, v in tasks.items()]}
    return [t.to_dict() if isinstance(t, Task) else t for t in tasks]


def _tasks_from_json(tasks: Any) -> Any:
    if tasks is None or isinstance(tasks, str):
        return tasks
    if isinstance(tasks, dict) and "__dict__" in tasks:
        return {k: Task.from_dict(v) if isinstance(v, dict) else v for k, v in tasks["__dict__"]}
    return [Task.from_dict(t) if isinstance(t, dict) else t for t in tasks]


def to_parts(estimator: Any) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, bytes]]:
    """A fitted estimator as (manifest, tensors, extra files); composites nest these."""
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(estimator, "task_states_")
    state, tensors = estimator._get_state()
    files: dict[str, bytes] = estimator._get_files() if hasattr(estimator, "_get_files") else {}
    manifest = {
        "estimator": type(estimator).__name__,
        "params": _params_to_json(estimator),
        "n_features_in": int(estimator.n_features_in_),
        "feature_names_in": (list(estimator.feature_names_in_)
                             if hasattr(estimator, "feature_names_in_") else None),
        "feature_columns": list(estimator._feature_columns),
        "y_format": estimator._y_format,
        "tasks": [t.to_dict() for t in estimator.task_states_],
        "features": estimator.features_.to_dict() if hasattr(estimator, "features_") else None,
        **state,
    }
    return manifest, tensors, files


def from_parts(manifest: dict[str, Any], tensors: dict[str, np.ndarray],
               files: dict[str, bytes]) -> Any:
    """Rebuild an estimator from :func:`to_parts` output (allow-listed classes only)."""
    registry = _registry()
    cls = registry.get(str(manifest.get("estimator")))
    if cls is None:
        raise ModelFileError(f"unknown estimator {manifest.get('estimator')!r} "
                             f"(known: {', '.join(registry)})")
    estimator = cls(**_params_from_json(manifest["params"]))
    estimator.task_states_ = [task_from_dict(t) for t in manifest["tasks"]]
    if manifest.get("features") is not None:
        estimator.features_ = FeatureEncoder.from_dict(manifest["features"])
    estimator.n_features_in_ = int(manifest["n_features_in"])
    if manifest.get("feature_names_in") is not None:
        estimator.feature_names_in_ = np.asarray(manifest["feature_names_in"], dtype=object)
    estimator._feature_columns = list(manifest["feature_columns"])
    estimator._y_format = str(manifest["y_format"])
    estimator._set_state(manifest, tensors, files)
    return estimator


def save(estimator: Any, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write ``estimator`` to the directory ``path`` atomically (see module docstring).

    An existing directory is replaced only with ``overwrite=True``, and only when it is a
    polyhead model directory holding nothing but the files its manifest lists: anything else
    (a folder of your own, a file) is refused with a one-line :class:`OutputPathError`.
    """
    from .io.paths import check_output, finalize_mode

    target = check_output(path, kind="model", force=overwrite, option="overwrite=True")
    parent = target.parent if str(target.parent) else Path(".")
    parts, tensors, files = to_parts(estimator)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent))
    try:
        from safetensors.numpy import save_file

        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp / WEIGHTS))
        checksums = {}
        for name, data in files.items():
            (tmp / name).write_bytes(data)
            checksums[name] = hashlib.sha256(data).hexdigest()
        manifest = {
            "format": "polyhead-model",
            "format_version": FORMAT_VERSION,
            "polyhead_version": __version__,
            "weights_sha256": _sha256(tmp / WEIGHTS),
            "files_sha256": checksums,
            **parts,
        }
        with open(tmp / MANIFEST, "w", encoding="utf-8") as fh:
            json.dump(_json_safe(manifest), fh, indent=1, default=_json_default, allow_nan=False)
        finalize_mode(tmp)
        if os.path.lexists(target):
            # checked again just before replacing: the directory may have changed meanwhile
            check_output(target, kind="model", force=overwrite, option="overwrite=True")
            backup = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=parent))
            os.rmdir(backup)
            os.replace(target, backup)
            os.replace(tmp, target)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _json_safe(value: Any) -> Any:
    """Non-finite floats (a NaN metric in the history) as null: a manifest is strict JSON
    that any reader can parse (``json.dump(allow_nan=False)`` checks it)."""
    if isinstance(value, (float, np.floating)) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _reject_constant(token: str) -> Any:
    raise ModelFileError(f"the manifest holds {token}, which a model file never does")


def _finite_float(text: str) -> float:
    value = float(text)
    if not np.isfinite(value):
        raise ModelFileError(f"the manifest holds the number {text}, which is not finite")
    return value


def parse_manifest(text: str) -> Any:
    """Strict JSON: NaN, Infinity and numbers that overflow to infinity (1e999) are refused."""
    return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of a model directory, checked for format, version and structure (with
    JSON only: no torch, nothing constructed beyond polyhead's own small values)."""
    root = Path(path)
    if not root.exists():
        raise ModelFileError(f"{root}: no such model directory")
    if not root.is_dir() or not (root / MANIFEST).is_file():
        raise ModelFileError(f"{root} is not a polyhead model directory (no {MANIFEST})")
    try:
        with open(root / MANIFEST, encoding="utf-8") as fh:
            manifest = parse_manifest(fh.read())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ModelFileError(f"{root / MANIFEST} is corrupted: {exc}") from None
    except ModelFileError as exc:
        raise ModelFileError(f"{root / MANIFEST}: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != "polyhead-model":
        raise ModelFileError(f"{root / MANIFEST} is not a polyhead model manifest")
    version = manifest.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ModelFileError(f"{root / MANIFEST} has no valid format_version ({version!r})")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{root} was written with model format {version} (polyhead "
            f"{manifest.get('polyhead_version', '?')}); this polyhead ({__version__}) reads format "
            f"{FORMAT_VERSION} and older: upgrade polyhead to load it")
    try:
        check_manifest(manifest)
    except ModelFileError as exc:
        raise ModelFileError(f"{root}: {exc}") from None
    return manifest


_Y_FORMATS = ("frame", "series", "1d", "2d")


def check_manifest(manifest: dict[str, Any]) -> None:
    """Check a (sub-)manifest's structure and values before anything is built from it: every
    malformed field is a ModelFileError naming it. Families check their own sections through
    a ``_check_manifest`` class method."""
    from .exceptions import PolyheadError
    from .features import FeatureEncoder

    def need(condition: bool, what: str) -> None:
        if not condition:
            raise ModelFileError(f"invalid {what}")

    name = manifest.get("estimator")
    registry = _registry()
    if not (isinstance(name, str) and name in registry):
        raise ModelFileError(f"unknown estimator {name!r} (known: {', '.join(registry)})")
    need(isinstance(manifest.get("params"), dict), "params")
    n_features = manifest.get("n_features_in")
    need(_count(n_features, 10**7), f"n_features_in {n_features!r}")
    columns = manifest.get("feature_columns")
    need(isinstance(columns, list) and len(columns) == n_features
         and all(isinstance(c, str) for c in columns), "feature_columns")
    names_in = manifest.get("feature_names_in")
    need(names_in is None or (isinstance(names_in, list) and all(isinstance(c, str) for c in names_in)),
         "feature_names_in")
    need(manifest.get("y_format") in _Y_FORMATS, f"y_format {manifest.get('y_format')!r}")
    entries = manifest.get("tasks")
    if not isinstance(entries, list) or not entries:
        raise ModelFileError("invalid tasks")
    try:
        states = [task_from_dict(t) for t in entries]
    except PolyheadError as exc:  # TaskError
        raise ModelFileError(f"tasks: {exc}") from None
    need(len({s.name for s in states}) == len(states), "tasks (a name is used twice)")
    features = manifest.get("features")
    encoder = None
    if features is not None:
        try:
            encoder = FeatureEncoder.from_dict(features)
        except PolyheadError as exc:
            raise ModelFileError(f"features: {exc}") from None
        need([c["name"] for c in encoder.columns_] == columns, "features (columns differ from "
             "feature_columns)")
    try:
        estimator = registry[name](**_params_from_json(manifest["params"]))
        estimator._check_params()
    except ModelFileError:
        raise
    except Exception as exc:  # untrusted input: whatever it trips over is the file's fault
        raise ModelFileError(f"params: {type(exc).__name__}: {exc}") from None
    checker = getattr(registry[name], "_check_manifest", None)
    if checker is not None:
        checker(manifest, states, encoder)


def _count(value: Any, limit: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= limit


def _params_from_json(params: dict[str, Any]) -> dict[str, Any]:
    params = dict(params)
    params["tasks"] = _tasks_from_json(params.get("tasks"))
    return _restore_params(params)


def load(path: str | os.PathLike[str]) -> Any:
    """Load a model saved with ``save``; predictions are identical to the saved model's.

    Raises :class:`~polyhead.exceptions.ModelFileError` for a missing, corrupted, truncated,
    tampered or too-new model directory.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    root = Path(path)
    manifest = read_manifest(root)
    if str(manifest.get("estimator")) not in _registry():
        raise ModelFileError(f"{root}: unknown estimator {manifest.get('estimator')!r} "
                             f"(known: {', '.join(_registry())})")
    weights = root / WEIGHTS
    if not weights.is_file():
        raise ModelFileError(f"{root}: {WEIGHTS} is missing")
    if _sha256(weights) != manifest.get("weights_sha256"):
        raise ModelFileError(f"{weights} does not match its manifest (checksum differs): the "
                             "file is truncated, corrupted or from another model")
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f"{weights} cannot be read: {exc}") from None
    files = {}
    listed = manifest.get("files_sha256") or {}
    if not isinstance(listed, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in listed.items()):
        raise ModelFileError(f"{root}: invalid files_sha256")
    for name, digest in listed.items():
        file = root / str(name)
        if "/" in str(name) or "\\" in str(name) or name in ("", ".", "..") or not file.is_file():
            raise ModelFileError(f"{root}: model file {name} is missing")
        data = file.read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            raise ModelFileError(f"{file} does not match its manifest (checksum differs): the "
                                 "file is truncated, corrupted or from another model")
        files[str(name)] = data
    try:
        return from_parts(manifest, tensors, files)
    except ModelFileError as exc:
        raise ModelFileError(f"{root}: {exc}") from None
    except ImportError:  # an optional dependency the model needs: its message says which
        raise
    except Exception as exc:  # a file is untrusted input: whatever it trips over is its fault
        raise ModelFileError(f"{root}: the model files are inconsistent ({type(exc).__name__}: "
                             f"{exc})") from None


def _registry() -> dict[str, Any]:
    """The estimator classes a model directory may name (nothing else is ever constructed)."""
    from .registry import estimators

    return estimators()


def _restore_params(params: dict[str, Any]) -> dict[str, Any]:
    params = {k: (v if k == "tasks" else _value_from_json(v)) for k, v in params.items()}
    if isinstance(params.get("hidden"), list):
        params["hidden"] = tuple(params["hidden"])
    return params
