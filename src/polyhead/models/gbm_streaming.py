"""``MultiTaskGBM(backend="xgboost").fit(ParquetSource(...))``: boosting out of core.

Pass 1 is the streaming net's (:func:`polyhead.streaming.plan_source`: statistics of every
row, a uniform sample, every class). Then each output (a task's slot: a regression target, a
class task, one label of a multilabel task) gets its own XGBoost booster trained on an
``ExtMemQuantileDMatrix``: XGBoost reads the source through a :class:`xgboost.DataIter`, one
record batch at a time, keeps its quantised pages in a temporary directory on disk, and never
holds the table. Rows without the output's label (or outside its task's condition) are
skipped. With early stopping, validation uses the same held-out row groups or rows as the net
(:class:`~polyhead.streaming.SourcePlan`).

Only the XGBoost backend streams; distributed boosting belongs to XGBoost's own Dask and Spark
integrations and is refused here in one line.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from itertools import chain
from typing import Any

import numpy as np

from .. import distributed
from .._optional import require
from ..exceptions import PolyheadError
from ..features import FeatureEncoder
from ..streaming import SourcePlan, plan_source
from .base import training_weights


def fit_source(gbm: Any, source: Any) -> None:
    """Fit ``gbm`` (MultiTaskGBM) on ``source`` (see the module docstring)."""
    if gbm.backend != "xgboost":
        raise PolyheadError(f"MultiTaskGBM(backend={gbm.backend!r}) cannot train from a stream; "
                            "backend='xgboost' can (external memory), or read the source into "
                            "memory (source.read())")
    if distributed.world_size() > 1:
        raise PolyheadError("MultiTaskGBM does not train on several processes; use XGBoost's "
                            "own Dask or Spark integration, or one process")
    xgb = require("xgboost", "xgboost", "backend 'xgboost'")
    from ..parallel import tree_threads
    from .gbm import BoosterUnit
    from .sklearn_base import make_slots

    stops = gbm.early_stopping in (True, "auto", "refit", "cv")  # "cv": one split, as "refit"
    plan = plan_source(gbm, source, gbm.validation_fraction if stops else 0.0)
    sample = plan.summary.fitting_frame()
    Xs, ys = sample[plan.features], sample[plan.targets]
    gbm._prepare_fit(Xs, ys)
    gbm._check_objectives(ys)
    gbm.features_ = FeatureEncoder(numeric="none", max_categories=gbm.max_categories).fit(
        Xs, plan.summary.column_stats())
    pairs = make_slots(gbm.task_states_, ys, gbm._training_weights)
    gbm.slots_ = [(s.key, task, s.objective, s.n_classes, s.alpha) for task, s in pairs]
    gbm._threads = tree_threads(plan.summary.rows, gbm.n_jobs)
    gbm.rows_seen_ = plan.summary.rows
    cache = tempfile.mkdtemp(prefix="polyhead-xgb-", dir=source.cache_dir)
    try:
        files = _encode_once(gbm, plan, cache)
        units = []
        for j, (key, _task, objective, n_classes, alpha) in enumerate(gbm.slots_):
            def rows(train: bool, j: int = j) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
                return _slot_rows(files, j, train)

            train = _batches(xgb, lambda: rows(True), f"{cache}/train-{j}")
            dtrain = xgb.ExtMemQuantileDMatrix(train, max_bin=256, nthread=gbm._threads)
            if dtrain.num_row() == 0:
                raise PolyheadError(f"output {key!r} has no labelled row to learn from")
            params: dict[str, Any] = {
                "eta": gbm.learning_rate, "max_leaves": gbm.max_leaf_nodes,
                "max_depth": gbm.max_depth or 0, "tree_method": "hist", "grow_policy": "lossguide",
                "colsample_bynode": gbm.max_features, "seed": gbm.random_state or 0, "nthread": gbm._threads, "max_bin": 256}
            params.update(_objective(objective, n_classes, alpha))
            evals: list[Any] = []
            has_valid = stops and (plan.valid_pieces or (not plan.by_piece and plan.fraction > 0))
            if has_valid:
                valid = _batches(xgb, lambda: rows(False), f"{cache}/valid-{j}")
                dvalid = xgb.ExtMemQuantileDMatrix(valid, ref=dtrain, max_bin=256, nthread=gbm._threads)
                if dvalid.num_row() > 0:
                    evals = [(dvalid, "valid")]
                del dvalid
            booster = xgb.train(params, dtrain, num_boost_round=gbm.n_estimators, evals=evals,
                                early_stopping_rounds=gbm.n_iter_no_change if evals else None,
                                verbose_eval=False)
            if evals and gbm._refits():  # again on every row, for the rounds the split chose
                n_train, n_valid = dtrain.num_row(), evals[0][0].num_row()
                rounds = gbm._refit_rounds(booster.best_iteration + 1, n_train, n_train + n_valid)
                del evals, booster
                def every_row(j: int = j) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
                    return chain(_slot_rows(files, j, True), _slot_rows(files, j, False))

                both = _batches(xgb, every_row, f"{cache}/all-{j}")
                dtrain = xgb.ExtMemQuantileDMatrix(both, max_bin=256, nthread=gbm._threads)
                booster = xgb.train(params, dtrain, num_boost_round=rounds, verbose_eval=False)
                evals = []
            elif evals:  # keep the best round's trees only
                booster = booster[: booster.best_iteration + 1]
            classes = np.arange(n_classes) if objective == "classification" else None
            units.append(([key], BoosterUnit("xgboost", booster, classes)))
            del dtrain, evals  # XGBoost's page files go with them, before the folder does
        gbm.units_ = units
    finally:
        import gc

        gc.collect()
        shutil.rmtree(cache, ignore_errors=True)
    gbm.streamed_ = True


def _objective(objective: str, n_classes: int, alpha: float | None) -> dict[str, Any]:
    if objective == "classification":
        if n_classes <= 2:
            return {"objective": "binary:logistic"}
        return {"objective": "multi:softprob", "num_class": n_classes}
    if objective == "poisson":
        return {"objective": "count:poisson"}
    if objective == "quantile":
        return {"objective": "reg:quantileerror", "quantile_alpha": alpha}
    return {"objective": "reg:squarederror"}


def _slot_positions(gbm: Any) -> list[tuple[int, int]]:
    """Per slot: its task's position and the slot's position within the task."""
    out = []
    for key, task, *_ in gbm.slots_:
        t = next(i for i, s in enumerate(gbm.task_states_) if s.name == task)
        out.append((t, [s[0] for s in gbm.slots_ if s[1] == task].index(key)))
    return out


def _encode_once(gbm: Any, plan: SourcePlan, folder: str) -> list[str]:
    """Every batch of this rank's pieces read and encoded once, into ``folder``: the encoded
    features, which rows validate, and each slot's labels, rows and weights. XGBoost reads a
    booster's rows more than once and there is a booster per output: without this, each of
    those passes read and encoded the source again."""
    positions = _slot_positions(gbm)
    pieces = [(piece, False) for piece in plan.my_train]
    if plan.by_piece:  # whole pieces held out (else rows within the training pieces)
        pieces += [(piece, True) for piece in plan.my_valid]
    files: list[str] = []
    for piece, held_out in pieces:
        mask = None if held_out else plan.valid_mask(piece)
        for frame in plan.frames(piece):
            y = frame[plan.targets]
            n = len(frame)
            weights = training_weights(gbm.task_states_, y, None, require_labels=False)
            slots = {t: gbm.task_states_[t].slots(y) for t in {t for t, _ in positions}}
            arrays: dict[str, np.ndarray] = {
                "X": gbm.features_.transform(frame[plan.features]),
                "held": (np.ones(n, dtype=bool) if held_out else np.zeros(n, dtype=bool)
                         if mask is None else mask[frame.index.to_numpy()])}
            for j, (t, k) in enumerate(positions):
                slot = slots[t][k]
                weight = weights[gbm.task_states_[t].name]
                w = np.ones(n) if weight is None else (weight[:, k] if weight.ndim == 2 else weight)
                arrays[f"values{j}"] = slot.values
                arrays[f"keep{j}"] = slot.mask & (w > 0)
                arrays[f"weight{j}"] = w
            files.append(f"{folder}/rows-{len(files)}.npz")
            try:
                np.savez(files[-1], allow_pickle=False, **arrays)  # type: ignore[arg-type]
            except OSError as error:  # a full disk, most likely
                raise PolyheadError(f"cannot write the encoded rows to {folder} ({error.strerror or error}); "
                                    "give ParquetSource(cache_dir=...) a folder on a disk with room") from None
    return files


def _slot_rows(files: list[str], j: int, train: bool
               ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """Slot ``j``'s labelled training (or validation) rows, batch by batch: encoded features,
    labels, weights (None when all are 1)."""
    for name in files:
        with np.load(name) as batch:
            keep = batch[f"keep{j}"] & (~batch["held"] if train else batch["held"])
            if not keep.any():
                continue
            w = batch[f"weight{j}"][keep]
            yield batch["X"][keep], batch[f"values{j}"][keep], None if np.all(w == 1) else w


def _batches(xgb: Any, make: Callable[[], Iterator[Any]], prefix: str) -> Any:
    """An :class:`xgboost.DataIter` over ``make()``'s batches (defined here: XGBoost is an
    optional dependency, imported only when a fit uses it)."""

    class Batches(xgb.DataIter):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            self._it: Iterator[Any] | None = None
            super().__init__(cache_prefix=prefix)

        def next(self, input_data: Callable[..., None]) -> bool:
            if self._it is None:
                self._it = make()
            item = next(self._it, None)
            if item is None:
                return False
            X, y, w = item
            input_data(data=X, label=y, weight=w)
            return True

        def reset(self) -> None:
            self._it = None

    return Batches()
