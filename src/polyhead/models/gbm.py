"""``MultiTaskGBM``: gradient-boosted trees per task - HistGradientBoosting, LightGBM or XGBoost."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from .. import _params as P
from .._optional import require
from ..exceptions import ModelFileError
from ..kinds import Slot
from ..registry import register_estimator
from ..tasks import TaskSpec
from .sklearn_base import SklearnMultiTask, groups_by_objective

_MIN_ROWS_FOR_EARLY_STOPPING = 100
#: early_stopping="auto" holds out a validation split only for outputs with this many rows
#: (scikit-learn's rule for HistGradientBoosting): below it, a 10% split is too small to stop
#: on and rare labels stopped after a single tree.
AUTO_EARLY_STOPPING_ROWS = 10_000


def _keep_classes(train: np.ndarray, valid: np.ndarray,
                  classes: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Moves into ``train`` the validation rows of any class that ``train`` lacks."""
    if classes is None:
        return train, valid
    missing = ~np.isin(classes[valid], classes[train])
    return np.concatenate([train, valid[missing]]), valid[~missing]


def _require(module: str, extra: str) -> Any:
    return require(module, extra, f"backend {extra!r}")


class BoosterUnit:
    """A LightGBM or XGBoost booster with the class codes it was trained on."""

    def __init__(self, library: str, booster: Any, classes: np.ndarray | None) -> None:
        self.library = library
        self.booster = booster
        self.classes_ = classes

    def _raw(self, F: np.ndarray) -> np.ndarray:
        if self.library == "lightgbm":
            return np.asarray(self.booster.predict(F))
        return np.asarray(self.booster.inplace_predict(F))

    def predict(self, F: np.ndarray) -> np.ndarray:
        return self._raw(F)

    def n_inputs(self) -> int:
        if self.library == "lightgbm":
            return int(self.booster.num_feature())
        return int(self.booster.num_features())


    def predict_proba(self, F: np.ndarray) -> np.ndarray:
        raw = self._raw(F)
        return np.column_stack([1 - raw, raw]) if raw.ndim == 1 else raw

    def to_bytes(self) -> bytes:
        header = json.dumps({"classes": None if self.classes_ is None else self.classes_.tolist()})
        if self.library == "lightgbm":
            body = self.booster.model_to_string().encode()
        else:
            body = bytes(self.booster.save_raw(raw_format="ubj"))
        return header.encode() + b"\n" + body

    @classmethod
    def from_bytes(cls, library: str, data: bytes) -> BoosterUnit:
        header, _, body = data.partition(b"\n")
        meta = json.loads(header)
        classes = None if meta["classes"] is None else np.asarray(meta["classes"], dtype=np.int64)
        if library == "lightgbm":
            lgb = _require("lightgbm", "lightgbm")
            booster = lgb.Booster(model_str=body.decode())
        else:
            xgb = _require("xgboost", "xgboost")
            booster = xgb.Booster()
            booster.load_model(bytearray(body))
        return cls(library, booster, classes)


@register_estimator
class MultiTaskGBM(SklearnMultiTask):
    """Gradient boosting for several tasks of mixed kinds, one estimator API.

    ``backend="hist"`` (default, nothing extra to install) fits scikit-learn's
    HistGradientBoosting per output. ``"lightgbm"`` fits one LightGBM booster per output.
    ``"xgboost"`` grows multi-output trees (``multi_strategy="multi_output_tree"``) for several
    regression tasks at once when their labels are missing together, and one booster per output
    otherwise. Every booster early-stops on a validation split of its own rows (when it has at
    least 100). Missing labels: rows are dropped per booster. With ``backend="xgboost"``,
    ``fit(ParquetSource(...))`` trains out of core through XGBoost's external memory
    (:mod:`polyhead.models.gbm_streaming`).

    Parameters
    ----------
    tasks : as in :class:`~polyhead.MultiTaskNet`
    backend : {"hist", "lightgbm", "xgboost"}, default="hist"
    n_estimators : int, default=500
        Maximum boosting rounds (early stopping usually ends sooner).
    learning_rate : float, default=0.05
    max_leaf_nodes : int, default=31
    max_depth : int or None, default=None
    max_features : float in (0, 1], default=0.3
        Share of the features each split considers, drawn at random per node (scikit-learn's
        ``max_features``, LightGBM's ``feature_fraction_bynode``, XGBoost's
        ``colsample_bynode``).
    early_stopping : bool, "auto", "refit" or "cv", default="refit"
        True: every output holds out ``validation_fraction`` of its rows (at least 100 rows
        are needed) and stops when the validation loss has not improved for
        ``n_iter_no_change`` rounds. "auto": only outputs with at least 10,000 rows do
        (scikit-learn's rule). "refit": as True, then each output is trained again on all
        its rows for the rounds the split chose, scaled by the rows gained, so small sets do
        not lose their held-out rows (a second training per output). "cv": the rounds come
        from ``round(1 / validation_fraction)``-fold cross-validation (each fold early-stopped
        as above, its rounds scaled by the rows gained, then averaged), then each output is
        trained on all its rows: k + 1 trainings per output, and a choice less at the mercy
        of one small split (out of core, as "refit"). Measured by
        ``benchmarks/quality.py`` on 19 sets: "refit" with a 20% split had 0.966 of per-target
        LightGBM's mean error and won on 15 sets, against 0.990 and 9 for True with 10%.
        Without early stopping, 100 rounds at 0.1 collapsed on abalone's 28 classes
        (accuracy 0.081 against 0.239). "cv" had 0.979 of LightGBM's error on eight small sets
        against 0.982 for "refit", at 2.4 times its fit time, so it is not the default.
    validation_fraction : float, default=0.2
    n_iter_no_change : int, default=50
        Rounds without improvement before stopping. With ``max_features=0.3`` (the pair is the
        default): 0.959 of per-target LightGBM's error on 19 sets, better on 18, against 0.966
        and 15 with 20 rounds and every feature (README, "Presets").
    random_state : int or None
    n_jobs : int or None
        Threads, with scikit-learn's meaning; None follows polyhead's thread policy
        (:mod:`polyhead.parallel`: one thread under 20,000 rows, on a busy machine and under
        outer parallelism).
    max_categories : int, default=64
        One-hot slots per categorical column; rarer categories share an "other" slot.
    shrinkage : {"auto", "none"}, default="none"
        "auto": each regression output is pulled toward its training mean by the least-squares
        factor measured on each booster's early-stopping validation rows (every row,
        cross-fitted, with ``early_stopping="cv"``; none without early stopping), where that
        lowers their squared error beyond the noise (:mod:`polyhead.models.shrinkage`);
        ``shrinkage_`` maps each shrunk output to its (factor, mean). "none" (the default):
        predictions as the boosters make them. Unlike the forest's out-of-bag rows, a fifth of
        the rows measured from a model the refit replaces is too noisy a guide: on
        ``benchmarks/quality.py``'s 13 sets with a regression task, "auto" shrank 7 outputs, and
        6 of them predicted worse (jura 0.5901 against 0.5817, atp7d 0.5012 against 0.4961); one
        gained: a target of sf2 with no event in its test fold.
    """

    _standardize_features = False
    _parameter_constraints: dict[str, list[Any]] = {
        "backend": [P.options("hist", "lightgbm", "xgboost")],
        "shrinkage": [P.options("auto", "none")],
        "n_estimators": [P.Interval(int, 1, None)],
        "learning_rate": [P.Interval(float, 0, None, "neither")],
        "max_leaf_nodes": [P.Interval(int, 2, None)],
        "max_depth": [P.NONE, P.Interval(int, 1, None)],
        "max_features": [P.Interval(float, 0, 1, "right")],
        "early_stopping": [P.BOOL, P.options("auto", "refit", "cv")],
        "validation_fraction": [P.Interval(float, 0, 1, "neither")],
        "n_iter_no_change": [P.Interval(int, 1, None)],
    }

    def __init__(self, tasks: TaskSpec = None, *, backend: str = "hist", n_estimators: int = 500,
                 learning_rate: float = 0.05, max_leaf_nodes: int = 31,
                 max_depth: int | None = None, max_features: float = 0.3,
                 early_stopping: bool | str = "refit",
                 validation_fraction: float = 0.2, n_iter_no_change: int = 50,
                 random_state: int | None = None, n_jobs: int | None = None,
                 max_categories: int = 64, shrinkage: str = "none") -> None:
        self.tasks = tasks
        self.backend = backend
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.max_depth = max_depth
        self.max_features = max_features
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.max_categories = max_categories
        self.shrinkage = shrinkage

    objectives = ("regression", "classification", "poisson", "quantile")

    def _groups(self, slots: list[Slot]) -> list[list[Slot]]:
        if self.backend == "xgboost":  # multi-output trees for the regression outputs
            return [g for g in groups_by_objective(slots, ("regression",))]
        return [[s] for s in slots]

    def _fit_group(self, group: list[Slot], F: np.ndarray, y: np.ndarray,
                   weight: np.ndarray | None) -> Any:
        """One output's booster: trained for ``n_estimators`` rounds, or early-stopped on a
        split ("refit", True, "auto"), or for the rounds that cross-validation chose ("cv")."""
        slot = group[0]
        train = {"hist": self._train_hist, "lightgbm": self._train_lightgbm,
                 "xgboost": self._train_xgboost}[self.backend]
        if not self._stops(len(y)):
            return train(slot, F, y, weight, self.n_estimators)[0]
        classes = y if slot.objective == "classification" else None
        if self.early_stopping == "cv":
            rounds, held = [], []
            for fit, valid in self._folds(len(y), classes):
                model, best = train(slot, F, y, weight, self.n_estimators, fit, valid)
                rounds.append(self._refit_rounds(best, len(fit), len(y)))
                held.append((valid, self._held_out(model, slot, F[valid])))
            if slot.objective == "regression" and self.shrinkage == "auto":  # every row, held out once
                self._heldout = (np.concatenate([v for v, _ in held]),
                                 np.concatenate([p.reshape(len(v), -1) for v, p in held]))
            return train(slot, F, y, weight, max(1, round(float(np.mean(rounds)))))[0]
        fit, valid = self._split(len(y), classes)
        model, best = train(slot, F, y, weight, self.n_estimators, fit, valid)
        if slot.objective == "regression" and self.shrinkage == "auto":
            self._heldout = (valid, self._held_out(model, slot, F[valid]))
        if not self._refits():
            return model
        return train(slot, F, y, weight, self._refit_rounds(best, len(fit), len(y)))[0]

    def _held_out(self, model: Any, slot: Slot, F: np.ndarray) -> np.ndarray:
        """The early-stopped model's predictions of its validation rows (regression outputs
        under ``shrinkage="auto"``, what it measures; nothing is predicted otherwise)."""
        if slot.objective != "regression" or self.shrinkage != "auto":
            return np.empty(0)
        return np.asarray(model.predict(F), dtype=float)

    def _stops(self, n: int) -> bool:
        if self.early_stopping == "auto":
            return n >= AUTO_EARLY_STOPPING_ROWS
        return bool(self.early_stopping) and n >= _MIN_ROWS_FOR_EARLY_STOPPING

    def _refits(self) -> bool:
        return self.early_stopping in ("refit", "cv")

    def _refit_rounds(self, best: int, n_train: int, n_all: int) -> int:
        """Rounds for the refit on every row: the validation's best, scaled by the rows gained
        (more rows support more rounds at the same learning rate)."""
        return max(1, min(self.n_estimators, round(best * n_all / max(n_train, 1))))

    def _split(self, n: int, classes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Random train/validation positions; with ``classes``, a class the random split left
        out of training has its rows moved there, so training sees every class (a rare label
        whose few positives all fell in validation would otherwise train a one-class model)."""
        perm = np.random.default_rng(self.random_state).permutation(n)
        n_valid = max(1, int(n * self.validation_fraction))
        return _keep_classes(perm[n_valid:], perm[:n_valid], classes)

    def _folds(self, n: int, classes: np.ndarray | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """early_stopping="cv": ``round(1 / validation_fraction)`` folds (at least 2), each
        validating on its own share of the rows (random, fixed by ``random_state``; every class
        kept in training as in :meth:`_split`)."""
        perm = np.random.default_rng(self.random_state).permutation(n)
        k = max(2, min(n, round(1 / self.validation_fraction)))
        chunks = np.array_split(perm, k)
        return [_keep_classes(np.concatenate(chunks[:i] + chunks[i + 1:]), chunks[i], classes)
                for i in range(k)]

    # Each backend: train one output for ``rounds`` rounds on every row, or, given ``fit`` and
    # ``valid`` positions, on ``fit`` with early stopping on ``valid``. Returns the model to
    # predict with and the rounds a refit on every row starts from (scaled by the rows gained).
    def _train_hist(self, slot: Slot, F: np.ndarray, y: np.ndarray, weight: np.ndarray | None,
                    rounds: int, fit: np.ndarray | None = None,
                    valid: np.ndarray | None = None) -> tuple[Any, int]:
        from sklearn import ensemble

        objective = slot.objective
        kwargs: dict[str, Any] = dict(
            max_iter=rounds, learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes, max_depth=self.max_depth,
            max_features=self.max_features, n_iter_no_change=self.n_iter_no_change,
            random_state=self.random_state)
        if objective == "classification":
            cls: Any = ensemble.HistGradientBoostingClassifier
        else:
            cls = ensemble.HistGradientBoostingRegressor
            kwargs["loss"] = {"regression": "squared_error", "poisson": "poisson",
                              "quantile": "quantile"}[objective]
            if objective == "quantile":
                kwargs["quantile"] = slot.alpha
        if fit is None or valid is None:
            model = cls(early_stopping=False, **kwargs).fit(F, y, sample_weight=weight)
            return model, model.n_iter_
        # Our own random split: scikit-learn's is stratified and fails on classes seen once.
        extra = {} if weight is None else {"sample_weight": weight[fit],
                                           "sample_weight_val": weight[valid]}
        model = cls(early_stopping=True, **kwargs).fit(F[fit], y[fit], X_val=F[valid],
                                                       y_val=y[valid], **extra)
        # n_iter_ counts the rounds past the best too: scikit-learn's stopped model keeps and
        # predicts with them, so the refit matches that model's length. Measured against the
        # best round alone (benchmarks/quality.py, 19 sets): 0.966 of LightGBM's error and 15
        # sets better with n_iter_, 0.973 and 13 with the best round
        return model, model.n_iter_

    def _train_lightgbm(self, slot: Slot, F: np.ndarray, y: np.ndarray, weight: np.ndarray | None,
                        rounds: int, fit: np.ndarray | None = None,
                        valid: np.ndarray | None = None) -> tuple[Any, int]:
        lgb = _require("lightgbm", "lightgbm")
        objective = slot.objective
        n = len(y) if fit is None else len(fit)
        params: dict[str, Any] = dict(
            n_estimators=rounds, learning_rate=self.learning_rate,
            num_leaves=self.max_leaf_nodes, max_depth=self.max_depth or -1,
            feature_fraction_bynode=self.max_features, random_state=self.random_state,
            n_jobs=self._threads, verbose=-1,
            min_child_samples=min(20, max(1, n // 10)))
        if objective == "classification":
            model = lgb.LGBMClassifier(**params)
        else:
            params["objective"] = {"regression": "regression", "poisson": "poisson",
                                   "quantile": "quantile"}[objective]
            if objective == "quantile":
                params["alpha"] = slot.alpha
            model = lgb.LGBMRegressor(**params)
        if fit is None or valid is None:
            model.fit(F, y, sample_weight=weight)
        else:
            import inspect

            # LightGBM 4.7 renamed eval_set to eval_X / eval_y
            evals = ({"eval_X": F[valid], "eval_y": y[valid]}
                     if "eval_X" in inspect.signature(model.fit).parameters
                     else {"eval_set": [(F[valid], y[valid])]})
            model.fit(F[fit], y[fit], sample_weight=None if weight is None else weight[fit],
                      callbacks=[lgb.early_stopping(self.n_iter_no_change, verbose=False)], **evals)
        classes = np.asarray(model.classes_, dtype=np.int64) if objective == "classification" else None
        return BoosterUnit("lightgbm", model.booster_, classes), model.best_iteration_ or rounds

    def _train_xgboost(self, slot: Slot, F: np.ndarray, y: np.ndarray, weight: np.ndarray | None,
                       rounds: int, fit: np.ndarray | None = None,
                       valid: np.ndarray | None = None) -> tuple[Any, int]:
        xgb = _require("xgboost", "xgboost")
        objective = slot.objective
        params: dict[str, Any] = dict(
            n_estimators=rounds, learning_rate=self.learning_rate,
            max_leaves=self.max_leaf_nodes, max_depth=self.max_depth or 0, tree_method="hist",
            grow_policy="lossguide", colsample_bynode=self.max_features,
            random_state=self.random_state, n_jobs=self._threads)
        if objective == "regression" and y.ndim == 2:
            params["multi_strategy"] = "multi_output_tree"
        if objective == "poisson":
            params["objective"] = "count:poisson"
        elif objective == "quantile":
            params.update(objective="reg:quantileerror", quantile_alpha=slot.alpha)
        regression = objective != "classification"
        fit_rows = np.arange(len(y)) if fit is None else fit
        classes, codes = None, y
        if not regression:  # XGBoost wants the codes it sees to be 0..k-1; the split (if any)
            # kept every class in training, so the codes are those of all rows
            classes = np.unique(y[fit_rows])
            codes = np.searchsorted(classes, y)
        model = xgb.XGBRegressor(**params) if regression else xgb.XGBClassifier(**params)
        w = None if weight is None else weight[fit_rows]
        if fit is None or valid is None or not len(valid):
            model.fit(F, codes, sample_weight=weight, verbose=False)
            return BoosterUnit("xgboost", model.get_booster(), classes), rounds
        model.set_params(early_stopping_rounds=self.n_iter_no_change)
        model.fit(F[fit], codes[fit], sample_weight=w, eval_set=[(F[valid], codes[valid])],
                  sample_weight_eval_set=None if weight is None else [weight[valid]], verbose=False)
        best = model.best_iteration + 1  # keep the best round's trees (the booster predicts with all)
        return BoosterUnit("xgboost", model.get_booster()[:best], classes), best

    def _fit_source(self, source: Any) -> None:
        """Out of core with ``backend="xgboost"`` (:mod:`polyhead.models.gbm_streaming`)."""
        from .gbm_streaming import fit_source

        fit_source(self, source)

    def _unit_to_bytes(self, model: Any) -> tuple[str, bytes]:
        if isinstance(model, BoosterUnit):
            return model.library, model.to_bytes()
        return super()._unit_to_bytes(model)

    def _unit_from_bytes(self, fmt: str, data: bytes) -> Any:
        if fmt in ("lightgbm", "xgboost"):
            try:
                return BoosterUnit.from_bytes(fmt, data)
            except ImportError:
                raise
            except Exception as exc:
                raise ModelFileError(f"{fmt} model cannot be loaded: {type(exc).__name__}: {exc}") from None
        return super()._unit_from_bytes(fmt, data)
