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
from .tasks import FittedTask, Task

FORMAT_VERSION = 1
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
    from .nn.weighting import LossWeighting

    params = {}
    for key, value in estimator.get_params(deep=False).items():
        if key == "tasks":
            value = _tasks_to_json(value)
        elif isinstance(value, LossWeighting):
            value = {"weighting": value.name, "config": value.get_config()}
        params[key] = value
    return params


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


def save(estimator: Any, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write ``estimator`` to the directory ``path`` atomically (see module docstring)."""
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(estimator, "task_states_")
    target = Path(path)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists; pass overwrite=True to replace it")
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a directory")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(f"cannot save to {target}: folder {parent} does not exist")
    state, tensors = estimator._get_state()
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent))
    try:
        from safetensors.numpy import save_file

        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp / WEIGHTS))
        manifest = {
            "format": "polyhead-model",
            "format_version": FORMAT_VERSION,
            "polyhead_version": __version__,
            "estimator": type(estimator).__name__,
            "params": _params_to_json(estimator),
            "weights_sha256": _sha256(tmp / WEIGHTS),
            "n_features_in": int(estimator.n_features_in_),
            "feature_names_in": (list(estimator.feature_names_in_)
                                 if hasattr(estimator, "feature_names_in_") else None),
            "feature_columns": list(estimator._feature_columns),
            "y_format": estimator._y_format,
            "tasks": [t.to_dict() for t in estimator.task_states_],
            "features": estimator.features_.to_dict(),
            **state,
        }
        with open(tmp / MANIFEST, "w", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=1, default=_json_default, allow_nan=True)
        if target.exists():
            backup = target.with_name(f".{target.name}.old")
            shutil.rmtree(backup, ignore_errors=True)
            os.replace(target, backup)
            os.replace(tmp, target)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of a model directory, checked for format and version."""
    root = Path(path)
    if not root.exists():
        raise ModelFileError(f"{root}: no such model directory")
    if not root.is_dir() or not (root / MANIFEST).is_file():
        raise ModelFileError(f"{root} is not a polyhead model directory (no {MANIFEST})")
    try:
        with open(root / MANIFEST, encoding="utf-8") as fh:
            manifest = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{root / MANIFEST} is corrupted: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != "polyhead-model":
        raise ModelFileError(f"{root / MANIFEST} is not a polyhead model manifest")
    version = manifest.get("format_version")
    if not isinstance(version, int):
        raise ModelFileError(f"{root / MANIFEST} has no valid format_version")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{root} was written with model format {version} (polyhead "
            f"{manifest.get('polyhead_version', '?')}); this polyhead ({__version__}) reads format "
            f"{FORMAT_VERSION} and older: upgrade polyhead to load it")
    return manifest


def load(path: str | os.PathLike[str]) -> Any:
    """Load a model saved with ``save``; predictions are identical to the saved model's.

    Raises :class:`~polyhead.exceptions.ModelFileError` for a missing, corrupted, truncated,
    tampered or too-new model directory.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    from .net import MultiTaskNet

    registry: dict[str, Any] = {"MultiTaskNet": MultiTaskNet}
    root = Path(path)
    manifest = read_manifest(root)
    cls = registry.get(str(manifest.get("estimator")))
    if cls is None:
        raise ModelFileError(f"{root}: unknown estimator {manifest.get('estimator')!r} "
                             f"(known: {', '.join(registry)})")
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
    try:
        params = dict(manifest["params"])
        params["tasks"] = _tasks_from_json(params.get("tasks"))
        estimator = cls(**_restore_weighting(params))
        estimator.task_states_ = [FittedTask.from_dict(t) for t in manifest["tasks"]]
        estimator.features_ = FeatureEncoder.from_dict(manifest["features"])
        estimator.n_features_in_ = int(manifest["n_features_in"])
        if manifest.get("feature_names_in") is not None:
            estimator.feature_names_in_ = np.asarray(manifest["feature_names_in"], dtype=object)
        estimator._feature_columns = list(manifest["feature_columns"])
        estimator._y_format = str(manifest["y_format"])
        estimator._set_state(manifest, tensors)
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
        raise ModelFileError(f"{root}: the model files are inconsistent ({type(exc).__name__}: "
                             f"{exc})") from None
    return estimator


def _restore_weighting(params: dict[str, Any]) -> dict[str, Any]:
    from .nn.weighting import WEIGHTINGS

    value = params.get("weighting")
    if isinstance(value, dict):
        name = value.get("weighting")
        if name not in WEIGHTINGS:
            raise ModelFileError(f"unknown loss weighting {name!r} in manifest")
        params["weighting"] = WEIGHTINGS[name](**value.get("config", {}))
    if isinstance(params.get("hidden"), list):
        params["hidden"] = tuple(params["hidden"])
    return params
