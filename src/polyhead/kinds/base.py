"""The protocol every task kind implements, and what kinds share.

A kind is a class; an instance is one task *fitted* to its training labels (its classes, its
scale). Everything that differs between regression, classes, counts, quantiles... lives in the
kind's own module, and the rest of polyhead asks the kind:

* labels: :meth:`Kind.fit` (learn from, and check, the training column(s)) and
  :meth:`Kind.encode` (training targets and their observed-mask);
* the network: :attr:`Kind.head_width`, :meth:`Kind.loss` on the head's raw output (with the
  mask and any sample weights), :meth:`Kind.output` (raw -> outputs, in torch, so exported
  graphs include it);
* predictions: :meth:`Kind.predict` (outputs -> labels or values), :meth:`Kind.columns` (the
  prediction columns), :meth:`Kind.proba_frame` for kinds with probabilities;
* scores: :meth:`Kind.metrics`, :attr:`Kind.main_metric`, :attr:`Kind.directions`;
* the tree and linear families: :meth:`Kind.slots` (the single-output problems a task becomes,
  each with an objective) and :meth:`Kind.from_slots` (their predictions back into outputs);
* a chain: :meth:`Kind.chain_features`; the service: :meth:`Kind.json_type`; the report:
  :meth:`Kind.figure`; files: :meth:`Kind.state` and :meth:`Kind.load_state`.

**Outputs** are what a model hands back per task, as a numpy array: each kind documents its own
(a value per row for regression, the positive class's probability for binary, ...).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from .._convert import FLOAT32_MAX, as_float, plain, row_label
from ..exceptions import PolyheadError, TaskError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ..tasks import Task

EPS = 1e-15


@dataclass
class Slot:
    """One single-output problem for the tree and linear families.

    ``objective`` is "regression" (standardised values), "classification" (class codes
    0..n_classes-1), "poisson" (non-negative counts) or "quantile" (standardised values, with
    ``alpha`` the quantile). A family fits every slot with the estimator it has for that
    objective, or refuses the task in one line.
    """

    key: str
    objective: str
    values: np.ndarray = field(repr=False)
    mask: np.ndarray = field(repr=False)
    n_classes: int = 0
    alpha: float | None = None
    weight: np.ndarray | None = field(default=None, repr=False)
    task: str = ""


def align_outputs(out: np.ndarray, fold: Kind, full: Kind) -> np.ndarray:
    """Outputs of a model fitted on part of the data (a fold, which may not have seen every
    class) laid out over the classes of the task fitted on all of it."""
    if fold.classes is None or full.classes is None or len(fold.classes) == len(full.classes):
        return out
    proba = fold.proba_array(out)
    aligned = np.zeros((proba.shape[0], len(full.classes)))
    position = {c: i for i, c in enumerate(full.classes.tolist())}
    aligned[:, [position[c] for c in fold.classes.tolist()]] = proba
    return full.from_proba(aligned)


class Kind:
    """Base class of task kinds (see the module docstring).

    Subclasses set the class attributes, and implement what their kind needs. Register a kind
    with :func:`polyhead.kinds.register_kind` to use it by name in ``Task(kind=...)``.
    """

    #: the kind's registered name, as in ``Task(kind=...)``
    kind: ClassVar[str] = ""
    #: what the head's output goes through, for architecture diagrams
    head_label: ClassVar[str] = ""
    #: loss options; the first is the default
    losses: ClassVar[tuple[str, ...]] = ()
    #: metrics in the order ``evaluate`` shows them, each "min" or "max" (which is better)
    directions: ClassVar[dict[str, str]] = {}
    #: the metric ``compare`` and the report rank models by
    main_metric: ClassVar[str] = ""
    #: the metric ``score`` averages (higher is better)
    score_metric: ClassVar[str] = ""
    has_proba: ClassVar[bool] = False
    #: whether ``predict`` gives a number on the labels' scale (a point estimate), which
    #: ``compare`` can check against a class task reading the same quantity
    point_value: ClassVar[bool] = False
    #: Kendall-Gal-Cipolla factor: 1/2 for Gaussian-likelihood kinds, 1 otherwise
    uncertainty_factor: ClassVar[float] = 1.0
    #: options of Task that this kind reads (anything else set on the task is an error)
    options: ClassVar[tuple[str, ...]] = ()
    #: whether another task may be conditional on this one's labels (``given=``)
    can_condition: ClassVar[bool] = False
    #: the class code a bare ``given="task"`` means (None: the class must be named)
    default_condition: ClassVar[int | None] = None

    def __init__(self, task: Task) -> None:
        self.task = task

    # -- identity ------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The task's name."""
        return self.task.name

    @property
    def classes(self) -> np.ndarray | None:
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.task!r})"

    @classmethod
    def parse_args(cls, task_name: str, values: list[Any]) -> dict[str, Any]:
        """Task options from the CLI's ``name:kind(a,b,...)`` arguments."""
        raise TaskError(f"task {task_name!r}: kind {cls.kind!r} takes no arguments")

    @classmethod
    def check_task(cls, task: Task) -> None:
        """Raise a TaskError for options this kind cannot take (called before fitting)."""
        if task.loss is not None and task.loss not in cls.losses:
            raise TaskError(f"task {task.name!r}: loss {task.loss!r} is not available for "
                            f"{cls.kind} tasks; choose from {', '.join(cls.losses)}")
        for option in ("classes", "quantiles"):
            if getattr(task, option) is not None and option not in cls.options:
                raise TaskError(f"task {task.name!r}: {option}= is only for "
                                f"{'ordinal' if option == 'classes' else 'quantile'} tasks, not "
                                f"{cls.kind}")
        if len(task.source_columns) != 1 and "columns" not in cls.options:
            raise TaskError(f"task {task.name!r}: several columns are only for multilabel tasks")

    @property
    def loss_name(self) -> str:
        return self.task.loss or self.losses[0]

    # -- fitting ---------------------------------------------------------------------------------
    @classmethod
    def from_labels(cls, task: Task, y: pd.DataFrame) -> Kind:
        """The task fitted to its training labels in ``y``."""
        cols = task.source_columns
        present = y[list(cols)].notna().to_numpy().any(axis=0) if len(y) else np.zeros(len(cols), bool)
        if not present.any():
            raise TaskError(f"task {task.name!r} has no labels: column {cols[0]!r} is all missing")
        fitted = cls(task)
        fitted.fit(y)
        return fitted

    def fit(self, y: pd.DataFrame) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def head_width(self) -> int:
        """Raw outputs the network's head gives this task."""
        return 1

    @property
    def out_dim(self) -> int:
        return self.head_width

    @property
    def output_columns(self) -> list[str]:
        """The columns ``predict`` gives for this task."""
        return [self.name]

    # -- targets -------------------------------------------------------------------------------
    def column(self, y: pd.DataFrame) -> pd.Series:
        return y[self.task.source_columns[0]]

    def encode(self, y: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
        """Training targets for the network and their observed-mask (missing labels False)."""
        raise NotImplementedError

    def observed(self, y: pd.DataFrame) -> np.ndarray:
        """Rows (``(n,)``) or cells (``(n, k)``) whose label is present."""
        return self.encode(y)[1]

    # -- the network (torch) -----------------------------------------------------------------
    def head_bias(self) -> np.ndarray | None:
        """The head's starting bias: the raw output that predicts the training labels' prior
        (class frequencies, quantiles...), so training starts from the base rate instead of
        from noise (None: zeros). Only available on a task fitted in this process."""
        return None

    def loss(self, raw: torch.Tensor, target: torch.Tensor,
             weight: torch.Tensor | None) -> torch.Tensor:  # pragma: no cover - abstract
        """The mean loss over observed labels (``weight``: 0 where missing; None: all present,
        equal weights). ``raw`` is the head's output, with any leading ensemble dimension."""
        raise NotImplementedError

    def output(self, raw: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """The head's raw output as this kind's outputs (probabilities, values in units...)."""
        raise NotImplementedError

    def export_decode(self, outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """In torch, for an exported graph (:mod:`polyhead.io.onnx`): the prediction (values;
        for class kinds, the class position) and the probabilities (None for numeric kinds),
        as :meth:`predict` and :meth:`proba_array` give them."""
        return outputs, None

    def onnx_from_slots(self, g: Any, slots: Mapping[str, str]) -> tuple[str, str | None]:
        """In an ONNX graph of the tree and linear families (:mod:`polyhead.io.onnx`): from
        this task's slot tensors (``[N]`` values, ``[N, n_classes]`` probabilities), the
        prediction (values, or class positions) and the probabilities, as :meth:`from_slots`
        then :meth:`export_decode` give them. ``g`` adds nodes (``g.op``) and constants
        (``g.const``)."""
        raise PolyheadError(f"ONNX export of the tree and linear families is not supported for "
                            f"{self.kind} tasks (task {self.name!r}); MultiTaskNet exports them")

    def closed_form_loss(self) -> str | None:
        """The loss as one of the closed forms :mod:`polyhead.nn.fast_epoch` differentiates by
        hand ("squared_error", "logistic", "softmax", "logistic_columns"), or None (autograd
        trains it)."""
        return None

    def stack_key(self) -> Any:
        """Tasks with the same (non-None) key may be trained as one block: their one-column
        heads, targets and weights side by side, their losses from one call to
        :meth:`stacked_loss` (174 binary labels then cost about what one multilabel task does)."""
        return None

    @staticmethod
    def stacked_loss(raw: torch.Tensor, target: torch.Tensor,
                     weight: torch.Tensor | None) -> torch.Tensor:  # pragma: no cover - abstract
        """Per-task losses ``(T,)`` of T stacked tasks: ``raw``, ``target``, ``weight`` are
        ``(..., n, T)``; each column is reduced as :meth:`loss` reduces one task."""
        raise NotImplementedError

    def output_loss(self, outputs: torch.Tensor, target: torch.Tensor,
                    weight: torch.Tensor | None) -> torch.Tensor:  # pragma: no cover - abstract
        """The training loss computed from outputs instead of raw values: an ensemble's
        validation loss is that of its averaged prediction."""
        raise NotImplementedError

    # -- predictions -------------------------------------------------------------------------------
    def predict(self, outputs: np.ndarray) -> np.ndarray:
        """Labels or values from outputs."""
        return outputs

    def expected(self, outputs: np.ndarray) -> np.ndarray:
        """The expected value of the prediction (``predict(X, expected=True)``)."""
        return self.predict(outputs)

    def columns(self, outputs: np.ndarray, expected: bool = False) -> dict[str, np.ndarray]:
        """Prediction columns: ``{column name: values}``."""
        return {self.name: self.expected(outputs) if expected else self.predict(outputs)}

    def otherwise_output(self, value: Any, n: int) -> np.ndarray:
        """Outputs that say ``value`` for ``n`` rows (NaN when value is None): what a
        conditional task predicts where its condition is false."""
        raise TaskError(f"task {self.name!r}: {self.kind} tasks cannot be conditional")

    def proba_frame(self, outputs: np.ndarray, index: pd.Index) -> pd.DataFrame:
        raise TypeError(f"task {self.name!r} ({self.kind}) has no probabilities")

    def proba_array(self, outputs: np.ndarray) -> np.ndarray:
        raise TypeError(f"task {self.name!r} has no probabilities")

    def from_proba(self, proba: np.ndarray) -> np.ndarray:
        raise TypeError(f"task {self.name!r} has no probabilities")

    # -- scores ----------------------------------------------------------------------------------
    def metrics(self, y: pd.DataFrame, outputs: np.ndarray) -> dict[str, float]:  # pragma: no cover
        """``{"n": rows scored, metric: value, ...}`` on the rows whose label is present."""
        raise NotImplementedError

    def empty_metrics(self) -> dict[str, float]:
        return {"n": 0.0, **{m: math.nan for m in self.directions}}

    def score(self, y: pd.DataFrame, outputs: np.ndarray) -> float:
        value = self.metrics(y, outputs)[self.score_metric]
        return value if self.directions[self.score_metric] == "max" else -value

    # -- uncertainty (polyhead.Conformal, polyhead.Calibrated) ----------------------------------
    #: conformity score methods; the first is the default
    conformal_methods: tuple[str, ...] = ()

    def conformity(self, y: pd.DataFrame, outputs: np.ndarray, scale: np.ndarray | None,
                   method: str) -> np.ndarray:
        """Nonconformity scores, ``(n,)`` (``(n, k)`` for a multilabel task's k labels), NaN
        where the label is missing: how badly each label disagrees with the prediction."""
        raise TypeError(f"task {self.name!r}: {self.kind} tasks have no conformal scores")

    def region(self, outputs: np.ndarray, threshold: np.ndarray, scale: np.ndarray | None,
               method: str, index: pd.Index) -> pd.DataFrame:
        """The prediction region of every row for a score threshold (per row, ``(n,)``, or per
        row and label): ``lower``/``upper`` for numbers, a bool column per class for sets."""
        raise TypeError(f"task {self.name!r}: {self.kind} tasks have no prediction regions")

    def region_stats(self, y: pd.DataFrame, region: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Per row: whether the region covers the label (NaN where missing), and its size
        (interval width, or number of classes in the set)."""
        raise TypeError(f"task {self.name!r}: {self.kind} tasks have no prediction regions")

    def temper(self, outputs: np.ndarray, temperature: np.ndarray) -> np.ndarray:
        """Outputs with probabilities temperature-scaled (logits divided by T)."""
        raise TypeError(f"task {self.name!r}: {self.kind} tasks have no probabilities to calibrate")

    def reliability(self, y: pd.DataFrame, outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(confidence, correct) pairs for a reliability diagram (None: the kind has none)."""
        return None

    def n_temperatures(self) -> int:
        """How many temperatures the task has (one per label for multilabel)."""
        return 1

    # -- tree and linear families ----------------------------------------------------------------
    def slots(self, y: pd.DataFrame) -> list[Slot]:  # pragma: no cover - abstract
        raise NotImplementedError

    def from_slots(self, results: Mapping[str, np.ndarray]) -> np.ndarray:  # pragma: no cover
        """Outputs from each slot's predictions: standardised values (regression, quantile),
        counts (poisson), or ``(n, n_classes)`` probabilities (classification)."""
        raise NotImplementedError

    # -- the rest of polyhead ----------------------------------------------------------------------
    def chain_features(self, outputs: np.ndarray) -> dict[str, np.ndarray]:
        """Feature columns a chain gives later tasks."""
        return {f"chain:{self.name}": np.asarray(outputs, dtype=float)}

    def json_type(self) -> dict[str, Any]:
        """JSON schema of one prediction value (the service's response schema)."""
        return {"type": "number"}

    def metadata(self) -> dict[str, Any]:
        """What ``/metadata`` and ``polyhead info`` show of this task."""
        return {"name": self.name, "kind": self.kind, "columns": list(self.task.source_columns),
                "output_columns": self.output_columns,
                "classes": None if self.classes is None else [plain(c) for c in self.classes.tolist()]}

    def figure(self, y: pd.DataFrame, outputs: np.ndarray, title: str) -> Any:
        """A figure of predictions against truth for the report (None: none)."""
        return None

    # -- files -------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """What was learnt from the labels, as JSON."""
        return {}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state`; raise TaskError on anything malformed."""

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task.to_dict(), "state": self.state()}


# -- shared helpers ----------------------------------------------------------------------------------
def interval_frame(lower: np.ndarray, upper: np.ndarray, index: pd.Index) -> pd.DataFrame:
    return pd.DataFrame({"lower": lower, "upper": upper}, index=index)


def interval_stats(truth: np.ndarray, region: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    lower, upper = region["lower"].to_numpy(float), region["upper"].to_numpy(float)
    covered = np.where(np.isnan(truth), np.nan, (truth >= lower) & (truth <= upper))
    return covered, upper - lower


def scatter_figure(values: np.ndarray, outputs: np.ndarray, title: str) -> Any:
    """Predicted against true, on the rows with a label and a finite prediction."""
    from ..evaluation import plots

    keep = ~np.isnan(values) & np.isfinite(outputs)
    return plots.scatter(values[keep].tolist(), outputs[keep].tolist(), title)


def numeric_values(task: Task, column: pd.Series, what: str) -> np.ndarray:
    """A numeric target as float64 with NaN for missing; errors name bad values and rows."""
    return as_float(column, f"task {task.name!r}: {what} target {column.name!r}", TaskError)


def log_prob(p: torch.Tensor) -> torch.Tensor:
    """``log p`` with probabilities clipped away from 0 (an output loss must stay finite)."""
    return p.clamp(1e-7, 1.0).log()


def column_means(values: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Per-column (weighted) means of ``(..., n, T)`` values: ``(T,)``."""
    flat = values.reshape(-1, values.shape[-1])
    if weight is None:
        return flat.mean(0)
    w = weight.reshape(-1, values.shape[-1]).to(values.dtype)
    return (flat * w).sum(0) / w.sum(0).clamp_min(1e-12)


def masked_mean(values: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values`` (None), or their ``weight``-weighted mean (0 where missing)."""
    if weight is None:
        return values.mean()
    weight = weight.to(values.dtype)
    return (values * weight).sum() / weight.sum().clamp_min(1e-12)


def finite_float(value: Any, what: str, positive: bool = False) -> float:
    """A JSON number that must be finite (and positive): a TaskError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TaskError(f"{what} must be a number, got {value!r}")
    number = float(value)
    if not (math.isfinite(number) and abs(number) <= FLOAT32_MAX) or (positive and number <= 0):
        raise TaskError(f"{what} must be a finite{' positive' if positive else ''} number, "
                        f"got {value!r}")
    return number


def first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def describe_bad(column: pd.Series, mask: np.ndarray) -> str:
    i = first_bad(mask)
    return f"{plain(column.iloc[i])!r} at row {row_label(column.index, i)!r}"
