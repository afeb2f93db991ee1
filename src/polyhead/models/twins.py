"""Exact-twin recall for :class:`~polyhead.MultiTaskNet` (``twins="auto"``).

Some tables repeat rows: the same wine entered twice, a product listed again. A row whose
features equal a training row's exactly (its *twin*) usually has the twin's labels: a forest
grown to one row per leaf recalls them, a network trained to generalise does not.
wine_quality repeats 1,179 of its 6,497 feature rows, about a quarter of each test fold has a
twin in training, and there the forest's error is 0.265 against the network's 0.618
(``benchmarks/duplicate_rows.py``).

With ``twins="auto"`` the network keeps, after training, a table of its training rows' keys (a
64-bit hash of each row's encoded features) with each task's label sums and counts per key.
A row with a twin then gets, per task, ``(1 - alpha) * network + alpha * twins`` where the
twins' output is what the tree families would make of their labels (the mean value or count,
the class frequencies: :meth:`Kind.from_slots`), blended member by member, so ensembles' spread
and intervals see it too.

Each task's ``alpha`` is chosen on the validation split, like the embedding and the per-task
epochs: the table of the training part looks up the validation rows, and a task takes the
``alpha`` of :data:`ALPHAS` with the lowest squared error of its outputs against the labels
(the Brier score for probabilities) only where that beats the network alone beyond the noise
(the paired per-row gain's mean above :data:`Z` standard errors, over at least
:data:`MIN_ROWS` validation rows with a twin). A task that gains nothing, or a table without
twins, stores nothing: the model file holds a table only for the tasks that use it. Quantile
tasks never recall (the twins' labels give no band).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

#: the blend weights tried on the validation rows
ALPHAS = (0.25, 0.5, 0.75, 1.0)
#: validation rows with a twin (and the task's label) needed before a task may recall
MIN_ROWS = 10
#: standard errors of the paired per-row gain a blend must win by (as the embedding choice)
Z = 1.5


def row_keys(features: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """A 64-bit key per row of the encoded feature matrix (equal rows, equal keys; -0.0 is
    0.0), hashed ``chunk`` rows at a time so a large matrix is never copied whole."""
    keys = np.empty(len(features), dtype=np.int64)
    for start in range(0, len(features), chunk):
        part = np.asarray(features[start:start + chunk], dtype=np.float32) + np.float32(0.0)
        hashed = pd.util.hash_pandas_object(pd.DataFrame(part), index=False).to_numpy()
        keys[start:start + len(part)] = hashed.view(np.int64)
    return keys


def _slots(states: list[Any], y: pd.DataFrame, weights: Mapping[str, np.ndarray | None]) -> dict[str, list[Any]]:
    """Per task that may recall, its slots (training weights folded into the masks)."""
    from .sklearn_base import make_slots

    out: dict[str, list[Any]] = {}
    for name, slot in make_slots(states, y, dict(weights)):
        out.setdefault(name, []).append(slot)
    return {name: slots for name, slots in out.items()
            if all(s.objective in ("regression", "classification", "poisson") for s in slots)}


@dataclass
class TwinTable:
    """Training rows' keys (sorted, unique) and, per slot, the label sums and counts per key."""

    keys: np.ndarray
    sums: dict[str, np.ndarray] = field(default_factory=dict)    # slot key -> (u,) or (u, C)
    counts: dict[str, np.ndarray] = field(default_factory=dict)  # slot key -> (u,)
    alphas: dict[str, float] = field(default_factory=dict)       # task -> blend weight

    @classmethod
    def build(cls, keys: np.ndarray, slots: Mapping[str, list[Any]], rows: np.ndarray) -> TwinTable:
        """The table of the training rows ``rows`` for every slot of ``slots``."""
        unique, inverse = np.unique(keys[rows], return_inverse=True)
        table = cls(unique)
        for task_slots in slots.values():
            for slot in task_slots:
                seen = slot.mask[rows]
                where = inverse[seen]
                table.counts[slot.key] = np.bincount(where, minlength=len(unique)).astype(np.float64)
                values = slot.values[rows][seen]
                if slot.objective == "classification":
                    sums = np.zeros((len(unique), slot.n_classes))
                    np.add.at(sums, (where, values.astype(np.int64)), 1.0)
                else:
                    sums = np.bincount(where, weights=values.astype(np.float64), minlength=len(unique))
                table.sums[slot.key] = sums
        return table

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each key's row in the table and whether it is there (once per batch of rows, for
        every task)."""
        position = np.searchsorted(self.keys, keys)
        position = np.minimum(position, max(len(self.keys) - 1, 0))
        found = (self.keys[position] == keys) if len(self.keys) else np.zeros(len(keys), bool)
        return position, found

    def twin_outputs(self, state: Any, looked_up: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """The task's outputs from the twins' labels (rows as :meth:`lookup` found them), NaN
        where a row has no labelled twin."""
        position, found = looked_up
        results = {}
        for key in self.slot_keys(state):
            counts = np.where(found, self.counts[key][position], 0.0)
            sums = self.sums[key][position]
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = sums / (counts[:, None] if sums.ndim == 2 else counts)
            results[key] = np.where((counts > 0)[:, None] if sums.ndim == 2 else counts > 0, mean, np.nan)
        return np.asarray(state.from_slots(results), dtype=float)

    def slot_keys(self, state: Any) -> list[str]:
        prefix = (state.name, f"{state.name}[")
        return [k for k in self.counts if k == prefix[0] or k.startswith(prefix[1])]

    def blend(self, states: list[Any], keys: np.ndarray, part: dict[str, np.ndarray],
              members: bool) -> dict[str, np.ndarray]:
        """``part`` (per task, outputs ``(rows, ...)``, or ``(K, rows, ...)`` with ``members``)
        with each recalling task's rows that have a twin blended towards the twins."""
        looked_up = self.lookup(keys)
        for state in states:
            alpha = self.alphas.get(state.name)
            if alpha is None:
                continue
            twin = self.twin_outputs(state, looked_up)
            part[state.name] = mix(part[state.name], twin[None] if members else twin, alpha)
        return part

    # -- files ------------------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        return {"alphas": dict(self.alphas), "slots": sorted(self.counts), "rows": len(self.keys)}

    def tensors(self) -> dict[str, np.ndarray]:
        out = {"twins.keys": self.keys}
        for key in self.counts:
            out[f"twins.sums.{key}"] = self.sums[key]
            out[f"twins.counts.{key}"] = self.counts[key]
        return out

    @classmethod
    def from_file(cls, manifest: Mapping[str, Any], tensors: Mapping[str, np.ndarray],
                  states: list[Any]) -> TwinTable:
        from ..exceptions import ModelFileError

        names = {s.name: s for s in states}
        alphas = manifest.get("alphas")
        slots = manifest.get("slots")
        if not isinstance(alphas, dict) or not isinstance(slots, list) or "twins.keys" not in tensors:
            raise ModelFileError("invalid twins: expected alphas, slots and the keys tensor")
        keys = np.asarray(tensors["twins.keys"])
        if keys.ndim != 1 or keys.dtype != np.int64 or np.any(np.diff(keys) <= 0):
            raise ModelFileError("invalid twins: the keys must be increasing int64")
        if manifest.get("rows", len(keys)) != len(keys):
            raise ModelFileError(f"invalid twins: {manifest.get('rows')!r} rows in the manifest, "
                                 f"{len(keys)} keys in the weights")
        table = cls(keys)
        for task, alpha in alphas.items():
            if task not in names or isinstance(alpha, bool) or not isinstance(alpha, (int, float)) \
                    or not 0 < alpha <= 1:
                raise ModelFileError(f"invalid twins: alpha {alpha!r} for task {task!r}")
            table.alphas[str(task)] = float(alpha)
        for key in slots:
            sums, counts = tensors.get(f"twins.sums.{key}"), tensors.get(f"twins.counts.{key}")
            if sums is None or counts is None or len(sums) != len(keys) or counts.shape != keys.shape:
                raise ModelFileError(f"invalid twins: the tables of {key!r} do not match its keys")
            table.sums[str(key)], table.counts[str(key)] = np.asarray(sums), np.asarray(counts)
        for task in table.alphas:
            if not table.slot_keys(names[task]):
                raise ModelFileError(f"invalid twins: no table for task {task!r}")
        return table


def mix(outputs: np.ndarray, twin: np.ndarray, alpha: float) -> np.ndarray:
    """``(1 - alpha) * outputs + alpha * twin`` where ``twin`` is known, ``outputs`` elsewhere."""
    twin = np.broadcast_to(twin, outputs.shape)
    known = ~np.isnan(twin)
    return np.where(known, (1 - alpha) * outputs + alpha * np.where(known, twin, 0.0), outputs)


def _label_outputs(state: Any, slots: list[Any], rows: np.ndarray) -> np.ndarray:
    """Each row's own labels as the task's outputs (NaN where missing): what a perfect
    prediction would output."""
    results = {}
    for slot in slots:
        seen, values = slot.mask[rows], slot.values[rows]
        if slot.objective == "classification":
            onehot = np.zeros((len(rows), slot.n_classes))
            onehot[np.flatnonzero(seen), values[seen].astype(np.int64)] = 1.0
            results[slot.key] = np.where(seen[:, None], onehot, np.nan)
        else:
            results[slot.key] = np.where(seen, values.astype(np.float64), np.nan)
    return np.asarray(state.from_slots(results), dtype=float)


def _task_alpha(net: np.ndarray, twin: np.ndarray, truth: np.ndarray) -> float | None:
    """The blend weight of :data:`ALPHAS` with the lowest squared error on the validation rows
    that have a labelled twin, if it beats the network alone beyond the noise (else None)."""
    shape = (len(net), -1)
    net, twin, truth = net.reshape(shape), twin.reshape(shape), truth.reshape(shape)
    usable = ~np.isnan(twin) & ~np.isnan(truth)
    rows = usable.any(axis=1)
    if rows.sum() < MIN_ROWS:
        return None
    target = np.where(usable, truth, 0.0)

    def loss(pred: np.ndarray) -> np.ndarray:
        return np.where(usable, (pred - target) ** 2, 0.0)[rows].sum(axis=1)

    base = loss(net)
    gains = {alpha: base - loss(mix(net, np.where(usable, twin, np.nan), alpha)) for alpha in ALPHAS}
    alpha = max(ALPHAS, key=lambda a: float(gains[a].mean()))
    gain = gains[alpha]
    if gain.mean() > Z * gain.std(ddof=1) / np.sqrt(len(gain)):
        return alpha
    return None


def choose(states: list[Any], features: np.ndarray, y: pd.DataFrame,
           weights: Mapping[str, np.ndarray | None], train: np.ndarray, valid: np.ndarray,
           outputs: Mapping[str, np.ndarray]) -> TwinTable | None:
    """The table of every row (``train`` and ``valid``) for the tasks whose blend with their
    twins beats the network on the validation rows beyond the noise (``outputs``: the
    network's outputs of the ``valid`` rows); None when no task recalls."""
    if len(valid) < MIN_ROWS:
        return None
    slots = _slots(states, y, weights)
    if not slots:
        return None
    keys = row_keys(features)
    if not np.isin(keys[valid], keys[train]).any():  # no validation row has a twin: no table
        return None
    part = TwinTable.build(keys, slots, train)
    looked_up = part.lookup(keys[valid])
    alphas: dict[str, float] = {}
    for state in states:
        if state.name not in slots:
            continue
        twin = part.twin_outputs(state, looked_up)
        truth = _label_outputs(state, slots[state.name], valid)
        alpha = _task_alpha(np.asarray(outputs[state.name], dtype=float), twin, truth)
        if alpha is not None:
            alphas[state.name] = alpha
    if not alphas:
        return None
    table = TwinTable.build(keys, {name: slots[name] for name in alphas},
                            np.sort(np.concatenate([train, valid])))
    table.alphas = alphas
    return table
