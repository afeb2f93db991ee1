"""Persistence for estimators made of per-task sub-estimators (Separate, TaskChain)."""

from __future__ import annotations

from typing import Any

import numpy as np


class CompositeMixin:
    """Saves ``estimators_`` as nested manifests, tensors and files, namespaced ``sub{i}``."""

    estimators_: list[Any]

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        from ..persistence import to_parts

        subs, tensors = [], {}
        self._files: dict[str, bytes] = {}
        for i, model in enumerate(self.estimators_):
            manifest, sub_tensors, files = to_parts(model)
            subs.append(manifest)
            tensors.update({f"sub{i}/{k}": v for k, v in sub_tensors.items()})
            self._files.update({f"sub{i}__{k}": v for k, v in files.items()})
        return {"estimators": subs, **self._extra_state()}, tensors

    def _get_files(self) -> dict[str, bytes]:
        return self._files

    @classmethod
    def _check_manifest(cls, manifest: dict[str, Any], states: list[Any], encoder: Any) -> None:
        from ..exceptions import ModelFileError
        from ..persistence import check_manifest

        subs = manifest.get("estimators")
        if not isinstance(subs, list) or len(subs) != len(states) or not all(isinstance(s, dict) for s in subs):
            raise ModelFileError("invalid estimators: one sub-model per task is needed")
        for i, (sub, state) in enumerate(zip(subs, states, strict=True)):
            try:
                check_manifest(sub)
            except ModelFileError as exc:
                raise ModelFileError(f"sub-model {i}: {exc}") from None
            names = [t.get("task", {}).get("name") for t in sub.get("tasks", [])]
            if names != [state.name]:
                raise ModelFileError(f"sub-model {i} predicts {names}, not task {state.name!r}")
        order = manifest.get("order")
        if order is not None and sorted(map(str, order)) != sorted(s.name for s in states):
            raise ModelFileError("invalid order: it must name every task once")

    def _set_state(self, manifest: dict[str, Any], tensors: dict[str, np.ndarray],
                   files: dict[str, bytes] | None = None) -> None:
        from ..persistence import from_parts

        files = files or {}
        self.estimators_ = []
        for i, sub in enumerate(manifest["estimators"]):
            prefix, fprefix = f"sub{i}/", f"sub{i}__"
            self.estimators_.append(from_parts(
                sub, {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)},
                {k[len(fprefix):]: v for k, v in files.items() if k.startswith(fprefix)}))
