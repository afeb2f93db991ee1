"""``MultiTaskNet``: a shared MLP trunk with one head per task, trained on all tasks at once."""

from __future__ import annotations

import contextlib
import copy
import functools
import itertools
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from .. import _params as P
from .. import parallel
from ..exceptions import PolyheadError
from ..features import FeatureEncoder
from ..registry import register_estimator
from ..tasks import TaskSpec
from . import presets, twins
from .base import MultiTaskMixin
from .twins import TwinTable

_PREDICT_CHUNK = 65536


@contextlib.contextmanager
def _threads(threads: int | None) -> Iterator[None]:
    """Pin torch's thread count for the block (None leaves it alone)."""
    import torch

    previous = torch.get_num_threads()
    if threads is not None and threads != previous:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if threads is not None and threads != previous:
            torch.set_num_threads(previous)


#: torch's default generator is one per process: fits that run side by side in threads
#: (``numeric_embedding="auto"``'s candidates) take turns at their seeded initialisation
_GLOBAL_RNG = threading.Lock()


@contextlib.contextmanager
def _torch_session(seed: int, threads: int | None, build: Callable[[], None],
                   draws: bool) -> Iterator[None]:
    """Pin the thread count; ``build`` (the initialisation) with torch seeded by ``seed``, then
    the block (the training), which continues that stream if it ``draws`` from it (dropout):
    all without touching the caller's RNG. A block that does not draw runs outside torch's
    generator, so fits without dropout can train side by side in threads."""
    import torch

    with _threads(threads):
        with _GLOBAL_RNG, torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            build()
            state = torch.get_rng_state()
        if not draws:
            yield
            return
        with _GLOBAL_RNG, torch.random.fork_rng(devices=[]):
            torch.set_rng_state(state)
            yield


def check_device(device: str) -> None:
    """A one-line error for a device this machine does not have (before any work)."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise PolyheadError(f"device={device!r} is not a torch device: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise PolyheadError(f"device={device!r}, but CUDA is not available here (torch "
                            f"{torch.__version__}, no CUDA GPU or a CPU-only build); use "
                            "device='cpu'")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise PolyheadError(f"device={device!r}, but Apple's MPS is not available here; use "
                            "device='cpu'")


#: input cells (rows x columns) up to which the candidates of ``numeric_embedding="auto"`` may
#: train side by side (each holds its own encoded copy of the data)
SIDE_BY_SIDE_CELLS = 20_000_000

#: runs of validation rows whose paired losses decide ``numeric_embedding="auto"``
_CHOICE_BLOCKS = 20


#: standard errors by which the embedded probe's paired validation gain must exceed zero, for
#: one-member probes (``probe_members=1``, the default preset's); probes of several members are
#: less noisy and decide at one standard error, as the full fits did before probes
#: (``benchmarks/embedding_choice.py``, mass-point bins: one-member probes at 1.5 0.885 of
#: per-target LightGBM's error and 17/19 sets, at 1.0 0.884 and 16/19; eight-member fits at 1.0
#: 0.884, 16/19, at 1/0.629 of the time)
CHOICE_Z = 1.5


def _choice_z(members: int) -> float:
    """The threshold of ``numeric_embedding="auto"``'s paired rule for probes of ``members``."""
    return CHOICE_Z if members == 1 else 1.0


def _embedding_wins(plain: Any, embedded: Any, scores: dict[str, float], z: float = 1.0,
                    keys: tuple[str, str] = ("none", "ple")) -> bool:
    """Whether the fit with embeddings replaces the plain one: its validation loss (of the
    weights that predict each task) must be lower by more than ``z`` standard errors of the
    paired per-block difference (a few dozen validation rows otherwise pick the wrong one on
    noise). A split too small to pair compares the totals (``scores`` under ``keys``)."""
    a, b = getattr(plain, "_valid_blocks", None), getattr(embedded, "_valid_blocks", None)
    if a is None or b is None or len(a) < 2:
        return scores[keys[1]] < scores[keys[0]]
    return _beyond_noise(a - b, z)


def _grown_bins_key(key: Any) -> bool:
    """Whether ``key`` names a probe of grown bins in ``embedding_scores_`` ("ple@64")."""
    head, _, bins = str(key).partition("@")
    return isinstance(key, str) and head == "ple" and bins.isdigit() and 2 <= int(bins) <= 1024


def _beyond_noise(gain: np.ndarray, z: float = 1.0) -> bool:
    """Whether paired per-block gains (losses before minus after) show a real improvement:
    their mean exceeds ``z`` standard errors (never with fewer than two blocks)."""
    return bool(len(gain) > 1 and gain.mean() > z * gain.std(ddof=1) / math.sqrt(len(gain)))


@register_estimator
class MultiTaskNet(MultiTaskMixin, BaseEstimator):
    """One neural network, several targets of mixed kinds.

    An input block reads the encoded features (:mod:`polyhead.nn.inputs`: numeric embeddings,
    category embeddings), a shared trunk (or a mixture of experts) reads it, and each task's
    head reads the trunk. The training loss is a weighted sum of per-task losses, each its
    kind's own, in which a missing label (NaN or None in a target) adds nothing, so every row
    still trains every task it has a label for.

    Parameters
    ----------
    tasks : None, dict, list of Task or "name:kind" strings
        None infers a task per column of ``y``, eight or more 0/1 label columns as one multilabel
        task (rules in :mod:`polyhead.tasks`).
    hidden : tuple of int, default=(64, 64)
        Widths of the trunk's layers.
    activation : {"relu", "gelu", "silu", "tanh", "elu"}, default="relu"
    dropout : float, default=0.0
    norm : {"layer", "batch", None}, default=None
        Normalisation after each trunk layer ("batch" only without an ensemble).
    numeric : {"standard", "clipped", "robust", "quantile"} or None, default=None
        How numeric features are scaled (:mod:`polyhead.features`); None: the preset's
        ("clipped" except for ``preset="fast"``). "clipped" standardises with a scale that
        outliers do not inflate and squashes into (-10, 10) (columns with at most ten distinct
        values are standardised plainly: a rare flag is not an outlier); "robust" centres on the
        median, divides by the inter-quartile range and clips smoothly; "quantile" maps each
        value's training quantile to a standard normal. Each keeps a reading far out of range
        from swamping the others.
    numeric_embedding : {None, "none", "ple", "periodic", "auto"}, default=None
        An embedding per numeric feature (those with more than two values): piecewise-linear
        on quantile bins, or periodic (see :mod:`polyhead.nn.inputs`); "none": the scaled
        values themselves. "auto" chooses between the two: it trains a probe of each, of
        ``probe_members`` members, without an embedding and with piecewise-linear ones, on
        the same training and validation rows and seed, keeps the embedding only when the
        embedded probe's validation loss is lower by more than 1.5 standard errors
        (``CHOICE_Z``; one for probes of several members) of the paired difference over 20
        runs of validation rows, so a small split's noise does not choose, then trains the
        chosen inputs with every member, the same fit as if they had been given (with no
        more members than a probe, the winning probe is the model; the probes train side by
        side on free CPUs, see :func:`polyhead.parallel.side_by_side`; their losses are in
        ``embedding_scores_``, the choice in ``numeric_embedding_``; given explicitly, it needs
        ``validation_fraction > 0``). None: the preset's ("auto" for ``preset="default"`` and
        "best", "none" otherwise; the preset's "auto" trains once, plainly, where there is no
        validation split to choose on: ``validation_fraction=0``, ``early_stopping=False``
        or streaming).
    probe_members : int or None, default=None
        Members of each probe of ``numeric_embedding="auto"`` (None: the preset's, 1, or 8 for
        ``preset="best"``: its candidates are the full ensembles). One-member probes cost a
        fraction of the full candidates (0.629 of their time over the 19 sets of
        ``benchmarks/embedding_choice.py``, 0.22 on the wide ones) for 0.1% more error; the
        value used is in ``probe_members_``.
    n_bins : int, "auto" or None, default=None
        Quantile bins of the piecewise-linear embedding (None: the preset's, "auto" for
        ``preset="default"`` and "best", 32 otherwise); the value used is in ``n_bins_``.
        "auto" (:func:`polyhead.nn.inputs.auto_bins`, with the measurements behind it): 8 up
        to 3,200 training rows; on more rows (one more bin per 400, at most 64)
        ``numeric_embedding="auto"`` probes both 8 bins and the grown count, which must beat 8
        beyond the noise (its probe's loss is in ``embedding_scores_`` as "ple@<bins>").
    d_embedding : int, default=16
        Width of each numeric embedding, and of each category embedding.
    embed_above : int or None, default=None
        Categorical columns with more categories than this get a learnt embedding instead
        of one-hot slots (None: always one-hot, up to ``max_categories``).
    batch_size : int or "auto", default="auto"
        "auto" picks the power of two that gives about 16 steps per epoch, between 32 and
        256. The value used is in ``batch_size_``.
    max_epochs : int, default=300
    lr : float, default=3e-3
        AdamW learning rate.
    weight_decay : float, default=1e-4
        AdamW decoupled weight decay (not on biases, norms, ensemble scalings or loss-weighting
        parameters).
    lr_schedule : {"plateau", "cosine", "constant"}, default="plateau"
        "plateau" halves the rate when the validation loss stalls for ``patience // 3`` epochs.
    early_stopping : bool, default=True
        Stop when the validation loss has not improved for ``patience`` epochs and restore the
        best weights. Needs ``validation_fraction > 0``.
    patience : int or None, default=None
        Epochs without a lower validation loss before training stops (the best epoch's weights
        are restored). None: the preset's (50 for "best", 30 otherwise); the value used is in
        ``patience_``. 30 against 20 (``benchmarks/quality.py``, 19 sets, the default preset
        of the time): 0.891 of per-target LightGBM's error against 0.903, at 7.39x its fit
        time against 6.42x; longer searches find lower validation losses on the smooth
        regression sets (enb 0.044 against 0.055, atp7d 0.453 against 0.472) and change the
        others by 0.5% at most. 50 ("best") against 30: 0.881 against 0.885, at 1.21x the
        time.
    validation_fraction : float, default=0.1
        Share of the training rows held out to monitor training (0 = none); their positions
        are in ``validation_indices_``.
    best_epoch : {"joint", "per_task", "auto"} or None, default=None
        None: the preset's ("auto" for ``preset="default"`` and "best", "joint" for "fast"
        and "balanced"). "joint" restores the weights of the epoch with the best total
        validation loss.
        "per_task" predicts each task with the weights of the epoch where its own validation
        loss was lowest among the epochs trained (only the snapshots tasks need are kept);
        training stops as with "joint", when the total validation loss has not improved for
        ``patience`` epochs. "auto" trains as "per_task", then keeps a task's own
        epoch only where its validation loss there beats the joint epoch's by more than one
        standard error of the paired difference over 20 runs of validation rows (the joint
        epoch for every task when streaming).
    n_ensemble : int or None, default=None
        None: the preset's (1 for "fast", 8 otherwise). K > 1 trains K members at once as one network; predictions average the members
        (probabilities for class tasks) and ``predict(X, return_std=True)`` also gives their
        spread. With an ensemble, early stopping watches the averaged prediction's loss.
    ensemble : {"packed", "batch"}, default="packed"
        "packed": K independent members, each its own initialisation and shuffle. "batch":
        K members sharing every weight matrix, each with its own scalings and biases (TabM,
        Gorishniy et al. 2025), trained on the same batches on the mean of their losses.
    head_hidden : tuple of int, default=()
        Task-specific layers between the trunk and each task's output layer.
    experts : int, default=0
        0: one shared trunk. N > 1: N expert trunks, mixed per task by a softmax gate (MMoE),
        for tasks that conflict.
    weighting : {"equal", "uncertainty", "dwa", "famo"} or LossWeighting, default="equal"
        How per-task losses are combined (see :mod:`polyhead.nn.weighting`).
    random_state : int or None, default=None
        Seeds initialisation, shuffling, dropout and the validation split: the same seed gives
        bit-identical results on a CPU with the same thread count.
    n_threads : int or None, default=None
        Torch threads while fitting and predicting. None follows polyhead's thread policy
        (:mod:`polyhead.parallel`): one thread for small networks, on a busy machine and inside
        outer parallelism; otherwise every CPU this process may use.
    compile : bool, default=False
        Train through ``torch.compile`` (it did not pay on the project's 2-core CPU).
    device : str, default="cpu"
    verbose : int, default=0
        1 prints a line per epoch with per-task validation losses.
    max_categories : int, default=64
        One-hot slots per categorical column: the most frequent categories get their own, the
        rest share an "other" slot (see :mod:`polyhead.features`).
    twins : {"auto", "none"} or None, default=None
        Exact-twin recall (:mod:`polyhead.models.twins`). "auto": a row whose encoded features
        equal training rows' exactly gets, per task, a blend of the network's outputs and
        those twins' labels, for the tasks where the blend beats the network on the validation
        rows beyond the noise; the table of training rows is kept (in the model file too)
        only for those tasks. None: the preset's ("auto" for "default" and "best", "none"
        otherwise). Needs a validation split; never when streaming. Not exported to ONNX.
    preset : {"fast", "balanced", "default", "best"}, default="default"
        Fills in ``n_ensemble``, ``numeric``, ``numeric_embedding``, ``n_bins``,
        ``best_epoch``, ``patience``, ``probe_members`` and ``twins`` where they are None
        (:mod:`polyhead.models.presets`): "fast" one plain network, "balanced" 8 packed
        members (an earlier default, about LightGBM's fit time), "default" those members with
        plain inputs or piecewise-linear embeddings, as one-member probes of each choose on the
        validation split, each task predicted by its own best epoch where that wins beyond the
        noise, "best" the default with ``patience=50``, choosing on both full candidates
        (``probe_members=8``). Chosen by
        ``benchmarks/quality.py``, with measured quality and fit time in the README.

    Attributes
    ----------
    tasks_ : dict of str to Task
    classes_ : dict of str to ndarray
    n_features_in_, feature_names_in_ : as in scikit-learn
    history_ : list of dict
        One plain dict per epoch: losses per task for train and validation, learning rate,
        task weights, seconds.
    n_iter_ : int
        Epochs run.
    n_ensemble_, numeric_ : int, str
        The ensemble size and numeric transform used (given, or from the preset).
    numeric_embedding_, n_bins_ : str or None, int
        The numeric embedding used (None: none; with "auto", the one chosen) and its bins.
    patience_, probe_members_ : int
        The patience and the probes' members used (given, or from the preset).
    embedding_scores_ : dict of str to float
        With ``numeric_embedding="auto"``: each probe's validation loss ("none", "ple", and
        "ple@<bins>" where ``n_bins="auto"`` grew the bins); empty otherwise.
    best_epoch_ : int
        The epoch whose weights the module holds (the best total validation loss).
    task_best_epochs_ : dict of str to int
        Per task, the epoch whose weights predict it.
    twins_ : TwinTable or None
        With ``twins="auto"``: the training rows' table and, in ``twins_.alphas``, each
        recalling task's blend weight; None when no task recalls.
    module_ : torch.nn.Module
        The fitted :class:`~polyhead.nn.MultiTaskModule`.

    Examples
    --------
    >>> import polyhead, pandas as pd
    >>> df = polyhead.datasets.load_abalone().head(300)
    >>> y = pd.DataFrame({"rings": df.rings, "rings_class": df.rings})
    >>> net = polyhead.MultiTaskNet(tasks={"rings": "regression", "rings_class": "multiclass"},
    ...                             max_epochs=5, random_state=0).fit(df.drop(columns="rings"), y)
    >>> list(net.predict(df.drop(columns="rings").head(2)).columns)
    ['rings', 'rings_class']
    """

    _parameter_constraints: dict[str, list[Any]] = {
        "hidden": [P.Satisfies(P.sizes, "a tuple of positive ints")],
        "activation": [P.options("relu", "gelu", "silu", "tanh", "elu")],
        "dropout": [P.Interval(float, 0, 1, "left")],
        "norm": [P.options("layer", "batch", None)],
        "numeric": [P.NONE, P.options("standard", "clipped", "robust", "quantile")],
        "numeric_embedding": [P.options(None, "none", "ple", "periodic", "auto")],
        "n_bins": [P.NONE, P.options("auto"), P.Interval(int, 2, 1024)],
        "twins": [P.options(None, "auto", "none")],
        "d_embedding": [P.Interval(int, 1, 4096)],
        "embed_above": [P.NONE, P.Interval(int, 1, None)],
        "batch_size": [P.options("auto"), P.Interval(int, 1, None)],
        "max_epochs": [P.Interval(int, 1, None)],
        "lr": [P.Interval(float, 0, None, "neither")],
        "weight_decay": [P.Interval(float, 0, None)],
        "lr_schedule": [P.options("plateau", "cosine", "constant")],
        "early_stopping": [P.BOOL],
        "patience": [P.NONE, P.Interval(int, 1, None)],
        "probe_members": [P.NONE, P.Interval(int, 1, None)],
        "validation_fraction": [P.Interval(float, 0, 1, "left")],
        "best_epoch": [P.NONE, P.options("joint", "per_task", "auto")],
        "n_ensemble": [P.NONE, P.Interval(int, 1, 4096)],
        "preset": [P.options("fast", "balanced", "default", "best")],
        "ensemble": [P.options("packed", "batch")],
        "head_hidden": [P.Satisfies(lambda v: v == () or P.sizes(v), "a tuple of positive ints")],
        "experts": [P.Interval(int, 0, 256)],
        "weighting": [P.options("equal", "uncertainty", "dwa", "famo"),
                      P.Satisfies(lambda v: type(v).__name__ != "str" and hasattr(v, "setup"),
                                  "a LossWeighting instance")],
        "random_state": [P.SEED],
        "n_threads": [P.NONE, P.Interval(int, 1, None)],
        "compile": [P.BOOL],
        "device": [P.is_instance(str)],
        "verbose": [P.BOOL, P.Interval(int, 0, None)],
        "max_categories": [P.Interval(int, 1, None)],
    }

    def __init__(self, tasks: TaskSpec = None, *, hidden: tuple[int, ...] = (64, 64),
                 activation: str = "relu", dropout: float = 0.0, norm: str | None = None,
                 numeric: str | None = None, numeric_embedding: str | None = None,
                 n_bins: int | str | None = None, d_embedding: int = 16, embed_above: int | None = None,
                 batch_size: int | str = "auto", max_epochs: int = 300, lr: float = 3e-3,
                 weight_decay: float = 1e-4, lr_schedule: str = "plateau",
                 early_stopping: bool = True, patience: int | None = None,
                 validation_fraction: float = 0.1, best_epoch: str | None = None,
                 n_ensemble: int | None = None, ensemble: str = "packed", head_hidden: tuple[int, ...] = (),
                 experts: int = 0, weighting: Any = "equal",
                 random_state: int | None = None, n_threads: int | None = None,
                 compile: bool = False, device: str = "cpu", verbose: int = 0,
                 max_categories: int = 64, preset: str = "default",
                 probe_members: int | None = None, twins: str | None = None) -> None:
        self.tasks = tasks
        self.preset = preset
        self.hidden = hidden
        self.activation = activation
        self.dropout = dropout
        self.norm = norm
        self.numeric = numeric
        self.numeric_embedding = numeric_embedding
        self.n_bins = n_bins
        self.d_embedding = d_embedding
        self.embed_above = embed_above
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.lr_schedule = lr_schedule
        self.early_stopping = early_stopping
        self.patience = patience
        self.probe_members = probe_members
        self.validation_fraction = validation_fraction
        self.best_epoch = best_epoch
        self.n_ensemble = n_ensemble
        self.ensemble = ensemble
        self.head_hidden = head_hidden
        self.experts = experts
        self.weighting = weighting
        self.random_state = random_state
        self.n_threads = n_threads
        self.compile = compile
        self.device = device
        self.verbose = verbose
        self.max_categories = max_categories
        self.twins = twins

    # -- fit ---------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> MultiTaskNet:
        """Fit the network on features ``X`` and targets ``y`` (one column per task).

        ``sample_weight``: one weight per row, or a DataFrame shaped like ``y`` with a weight
        per row and target column (per task, per label). Each task's loss is the weighted mean
        over its labelled rows.

        ``X`` may instead be a :class:`polyhead.io.ParquetSource` (``y`` left out): the network
        then trains out of core, streaming the files, with memory bounded by the source's
        sample and shuffle buffer (:mod:`polyhead.streaming`); inside a ``torch.distributed``
        process group each process trains on its own row groups (:mod:`polyhead.distributed`).
        """
        self._check_params()
        check_device(self.device)
        chosen = presets.resolve(self.preset, {
            "n_ensemble": self.n_ensemble, "numeric": self.numeric, "best_epoch": self.best_epoch,
            "numeric_embedding": self.numeric_embedding, "n_bins": self.n_bins,
            "patience": self.patience, "probe_members": self.probe_members, "twins": self.twins})
        self.n_ensemble_, self.numeric_ = int(chosen["n_ensemble"]), str(chosen["numeric"])
        self._best_epoch_mode = str(chosen["best_epoch"])
        embedding = chosen["numeric_embedding"]
        from ..io.parquet import ParquetSource

        if (embedding == "auto" and self.numeric_embedding is None
                and (isinstance(X, ParquetSource) or self.validation_fraction <= 0
                     or not self.early_stopping)):
            embedding = "none"  # the preset's choice needs a validation split: one plain fit
        self.numeric_embedding_ = None if embedding == "none" else str(embedding)
        self.n_bins_ = self._resolve_bins(chosen["n_bins"], X)
        self._bins_auto = chosen["n_bins"] == "auto"
        self.patience_ = int(chosen["patience"])
        self.probe_members_ = int(chosen["probe_members"])
        self._twins_mode = str(chosen["twins"])
        self.twins_: TwinTable | None = None
        self.embedding_scores_: dict[str, float] = {}
        if self.n_ensemble_ > 1 and self.norm == "batch":
            raise PolyheadError("norm='batch' is not available with n_ensemble > 1; "
                                "use norm='layer' or None")
        if isinstance(X, ParquetSource):
            if y is not None or sample_weight is not None:
                raise PolyheadError("fit(source): a ParquetSource holds its own targets; pass no "
                                    "y (and sample weights are not available when streaming)")
            if self.numeric_embedding_ == "auto":
                raise PolyheadError("numeric_embedding='auto' is not available when streaming "
                                    "(it chooses on probes trained on the same rows first); choose 'ple', "
                                    "'periodic' or 'none'")
            if self._best_epoch_mode == "auto":  # no paired check over streamed chunks: every
                self._best_epoch_mode = "joint"  # task takes the joint epoch, no snapshots
            from .net_streaming import fit_source

            fit_source(self, X)
            return self
        if self.numeric_embedding_ == "auto":
            return self._fit_choosing_embedding(X, y, sample_weight)
        self.world_size_, self.streamed_ = 1, False
        Xf, yf = self._prepare_fit(X, y, sample_weight)
        self.features_ = FeatureEncoder(numeric=self.numeric_, max_categories=self.max_categories,
                                        embed_above=self.embed_above).fit(Xf)
        features = self.features_.transform(Xf)
        self._prepare_training(features)
        targets = self.encode_targets(yf, self._training_weights)
        n_train = len(features) - math.floor(len(features) * self.validation_fraction)
        with _torch_session(self._seed, self._threads_for(self._batch_size(n_train)), self._build,
                            draws=self.dropout > 0):
            self.fit_loop(features, targets)
        if self._twins_mode == "auto" and not self.__dict__.get("_probe"):
            self._fit_twins(Xf, yf, features)
        return self

    def _fit_twins(self, Xf: pd.DataFrame, yf: pd.DataFrame, features: np.ndarray) -> None:
        """``twins="auto"``: the tasks whose outputs gain from their exact twins' labels on the
        validation rows keep a table of the training rows (:mod:`polyhead.models.twins`)."""
        valid = np.asarray(self.validation_indices_)
        if len(valid) == 0:
            return
        train = np.setdiff1d(np.arange(len(features)), valid)
        outputs = self._predict_outputs(Xf.iloc[valid])
        self.twins_ = twins.choose(self.task_states_, features, yf, self._training_weights,
                                   train, valid, outputs)

    @staticmethod
    def _resolve_bins(n_bins: int | str, X: Any) -> int:
        """``n_bins`` as a count: "auto" from the number of rows given to fit (a source's
        rows when streaming)."""
        if n_bins != "auto":
            return int(n_bins)
        from ..nn.inputs import auto_bins

        rows = getattr(X, "num_rows", None)
        if rows is None:
            shape = getattr(X, "shape", None)
            rows = shape[0] if shape is not None else len(np.asarray(X))  # lists, array-likes
        return auto_bins(int(rows))

    def _fit_choosing_embedding(self, X: Any, y: Any, sample_weight: Any) -> MultiTaskNet:
        """``numeric_embedding="auto"``: two probes, one without an embedding and one with
        piecewise-linear embeddings, each of ``probe_members_`` members, on the same rows, split
        and seed (a third with the grown bins where ``n_bins="auto"`` grows them, which
        replaces the 8-bin probe only when its validation loss is lower beyond the noise); the
        embedded one wins only when its validation loss is lower beyond the noise
        (:func:`_choice_z`). The winner trains again with every member (or, with no more
        members than a probe, is kept as it is) and becomes this estimator's fitted state."""
        from sklearn.base import clone

        if self.validation_fraction <= 0 or not self.early_stopping:
            raise PolyheadError("numeric_embedding='auto' chooses on the validation loss: set "
                                "validation_fraction > 0 and early_stopping=True, or choose "
                                "'ple', 'periodic' or 'none'")
        seed = self.random_state
        if seed is None:
            seed = int(np.random.default_rng().integers(2**31))
        members = min(self.n_ensemble_, self.probe_members_)

        from ..nn.inputs import MIN_BINS

        def candidate(embedding: str, n_bins: int, n_ensemble: int) -> Any:  # an unfitted clone
            return clone(self).set_params(numeric_embedding=embedding, random_state=seed,
                                          n_bins=n_bins, n_ensemble=n_ensemble)

        # n_bins="auto" on more rows than 8 bins are for: 8 bins and the grown count both probed
        variants = {"none": ("none", self.n_bins_), "ple": ("ple", self.n_bins_)}
        if self.__dict__.get("_bins_auto") and self.n_bins_ > MIN_BINS:
            variants["ple"] = ("ple", MIN_BINS)
            variants[f"ple@{self.n_bins_}"] = ("ple", self.n_bins_)
        fits, cancel = {}, threading.Event()
        for key, (embedding, n_bins) in variants.items():
            fits[key] = candidate(embedding, n_bins, members)
            fits[key]._score_blocks = _CHOICE_BLOCKS
            fits[key]._cancel = cancel  # a failed or interrupted candidate stops the others
            fits[key]._probe = members < self.n_ensemble_  # refitted: no twins of its own
        calls = [functools.partial(fitted.fit, X, y, sample_weight) for fitted in fits.values()]
        workers = self._candidate_workers(X, y, sample_weight, len(calls), members)
        parallel.run_side_by_side(calls, workers, cancel)
        scores = {key: fitted._validation_score() for key, fitted in fits.items()}
        z = _choice_z(members)
        ple = "ple"  # more bins only where they beat 8 beyond the noise, then against none
        for key in fits:
            if key.startswith("ple@") and _embedding_wins(fits["ple"], fits[key], scores, z, ("ple", key)):
                ple = key
        choice = ple if _embedding_wins(fits["none"], fits[ple], scores, z, ("none", ple)) else "none"
        best = fits[choice]
        if members < self.n_ensemble_:  # the chosen inputs, every member: one fit
            best = candidate(*variants[choice], self.n_ensemble_)
            if "on_epoch_end" in self.__dict__:  # a progress report on this instance (the CLI's)
                best.on_epoch_end = self.on_epoch_end
            best.fit(X, y, sample_weight)
        params = self.get_params(deep=False)
        self.__dict__.update({k: v for k, v in best.__dict__.items()
                              if k not in params
                              and k not in ("_score_blocks", "_valid_blocks", "_cancel", "_probe", "_bins_auto",
                                            "on_epoch_end")})
        self.embedding_scores_ = scores
        return self

    def _candidate_workers(self, X: Any, y: Any, sample_weight: Any, n: int,
                           members: int | None = None) -> int:
        """How many of ``numeric_embedding="auto"``'s candidate fits (probes of ``members``
        members each; None: the model's own) run at once: side by side
        on free CPUs, one thread each (:func:`polyhead.parallel.side_by_side`), where a step
        is small enough that two threads on one fit gain less than two fits side by side
        (``parallel.SIDE_BY_SIDE_WORK``; larger steps already use every CPU well, and the
        candidates' unequal lengths would leave one idle), where they give the same result
        as one after another (no dropout, whose
        draws would interleave; the CPU; threads left to the policy), and where two copies of
        the data are small. The initialisation and the shuffles are seeded alike either way."""
        import torch
        from sklearn.base import clone

        shape = getattr(X, "shape", None)
        if (self.dropout > 0 or self.n_threads is not None or shape is None
                or torch.device(self.device).type != "cpu"
                or math.prod(shape) > SIDE_BY_SIDE_CELLS):
            return 1
        workers = parallel.side_by_side(n)  # first: no CPU free, no need to size the steps
        if workers <= 1:
            return 1
        probe = clone(self)  # the step's size: tasks and encoded width, as a candidate sees them
        Xf, _ = probe._prepare_fit(X, y, sample_weight)
        encoder = FeatureEncoder(numeric=self.numeric_, max_categories=self.max_categories,
                                 embed_above=self.embed_above).fit(Xf)
        probe.n_ensemble_ = self.n_ensemble_ if members is None else members
        probe._n_inputs = encoder.n_outputs_
        n_train = len(Xf) - math.floor(len(Xf) * self.validation_fraction)
        if probe._step_work(probe._batch_size(n_train)) >= parallel.SIDE_BY_SIDE_WORK:
            return 1
        return workers

    def _preset_count(self, training: dict[str, Any], key: str) -> int:
        """A preset-filled count kept in a model file's ``training`` (``patience``,
        ``probe_members``): a file from before it was kept takes the preset's value; anything
        but a positive integer is a :class:`ModelFileError`."""
        from ..exceptions import ModelFileError

        value = training.get(key)
        if value is None:
            return int(presets.resolve(self.preset, {key: getattr(self, key)})[key])
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelFileError(f"invalid training: {key} {value!r}")
        return value

    def _validation_score(self) -> float:
        """The validation loss of the weights that predict: the best epoch's total, or with
        per-task best epochs the weighted sum of each task's best (inf without validation)."""
        records = [h for h in self.history_ if h["valid"] is not None]
        if not records:
            return math.inf
        if self._best_epoch_mode == "joint":
            return float(min(h["valid_loss"] for h in records))
        by_epoch = {h["epoch"]: h["valid"] for h in records}
        return float(sum(t.task.weight * by_epoch[self.task_best_epochs_[t.name]][t.name]
                         for t in self.task_states_))

    def _prepare_training(self, features: np.ndarray, seed: int | None = None) -> None:
        """The loss units, the seed and the input layout (``features``: encoded rows, all of
        them or a sample)."""
        self._units = _loss_units(self.task_states_)
        self._loss_order = _order(self._units)
        seed = self.random_state if seed is None else seed
        if seed is None:
            seed = int(np.random.default_rng().integers(2**31))
        self._seed = seed
        self._layout = self._input_layout(features)
        self._n_inputs = features.shape[1]

    def _build(self) -> None:
        self.module_ = self.build_module(self._n_inputs).to(self.device)
        self.module_.init_head_bias({t.name: bias for t in self.task_states_
                                     if (bias := t.head_bias()) is not None})
        self.weighting_ = self.build_weighting()

    def encode_targets(self, yf: pd.DataFrame, weights: dict[str, np.ndarray | None]
                       ) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
        """Per loss unit, the encoded targets and their weights (None: all present, equal)."""
        per_task = {}
        for t in self.task_states_:
            values, _ = t.encode(yf)
            weight = weights[t.name]
            if weight is not None:  # a label outside a task's weight never reaches its loss
                values = np.where(weight > 0, values, np.zeros((), values.dtype))
            per_task[t.name] = (values, None if weight is None else weight.astype(np.float32))
        return _unit_targets(self._units, per_task)

    def _input_layout(self, features: np.ndarray) -> dict[str, Any]:
        """Which encoded columns get numeric embeddings (numeric ones with more than two
        values) or category embeddings, and the PLE bins: fitted once, saved in the file."""
        roles = self.features_.roles_
        embedded: list[int] = []
        if self.numeric_embedding_ is not None:
            for j, role in enumerate(roles):
                if role == "numeric" and len(np.unique(features[: 2000, j])) > 2:
                    embedded.append(j)
        edges = None
        if self.numeric_embedding_ == "ple" and embedded:
            edges = quantile_edges(features[:, embedded], self.n_bins_)
        return {"embedded": embedded, "codes": [j for j, r in enumerate(roles) if r == "code"],
                "cardinalities": self.features_.code_cardinalities_, "edges": edges}

    def build_module(self, in_features: int) -> Any:
        """The network for ``in_features`` encoded inputs (see :class:`~polyhead.nn.MultiTaskModule`)."""
        import torch

        from ..nn import InputBlock, MultiTaskModule

        layout = getattr(self, "_layout", None) or {}
        edges = layout.get("edges")
        inputs = InputBlock(
            in_features, embedded=layout.get("embedded", ()), codes=layout.get("codes", ()),
            cardinalities=layout.get("cardinalities", ()),
            numeric_embedding=self.numeric_embedding_ if layout.get("embedded") else None,
            edges=None if edges is None else torch.as_tensor(edges), n_bins=self.n_bins_,
            d_embedding=self.d_embedding, d_category=self.d_embedding)
        heads = {t.name: t.head_width for t in self.task_states_}
        return MultiTaskModule(inputs, heads, tuple(int(h) for h in self.hidden), self.activation,
                               self.dropout, self.norm, k=self.n_ensemble_, ensemble=self.ensemble,
                               head_hidden=tuple(int(h) for h in self.head_hidden),
                               experts=self.experts, fused=layout.get("fused", True))

    def build_weighting(self) -> Any:
        from ..nn import get_weighting

        weighting = get_weighting(self.weighting)
        weighting.setup(self.task_states_, [t.task.weight for t in self.task_states_])
        return weighting.to(self.device)

    def build_optimizer(self) -> Any:
        """AdamW; no weight decay on biases, norms, ensemble scalings or the loss weighting's
        parameters."""
        import torch

        decay: list[Any] = []
        no_decay: list[Any] = []
        for name, param in self.module_.named_parameters():
            plain = param.ndim < 2 or "norm" in name or name.endswith((".r", ".s"))
            (no_decay if plain else decay).append(param)
        no_decay += list(self.weighting_.parameters())
        groups: list[dict[str, Any]] = [{"params": decay, "weight_decay": self.weight_decay},
                                        {"params": no_decay, "weight_decay": 0.0}]
        if not self.weight_decay:  # one group: one optimiser kernel per step instead of two
            groups = [{"params": decay + no_decay, "weight_decay": 0.0}]
        from ..nn.optim import LeanAdamW

        try:
            # One fused kernel per group (about half the per-step cost of foreach on a CPU),
            # called without the optimiser wrapper's per-step Python overhead.
            return LeanAdamW(groups, lr=self.lr)
        except RuntimeError:  # a device without fused AdamW
            return torch.optim.AdamW(groups, lr=self.lr, foreach=True)

    def build_scheduler(self, optimizer: Any) -> Any:
        import torch

        if self.lr_schedule == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, factor=0.5, patience=max(1, self.patience_ // 3))
        if self.lr_schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.max_epochs)
        return None

    def _split(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Train and validation row positions (validation empty when too few rows)."""
        rng = np.random.default_rng(self._seed)
        n_valid = math.floor(n * self.validation_fraction)
        if n_valid < 1 or n - n_valid < 1:
            return np.arange(n), np.arange(0)
        perm = rng.permutation(n)
        return np.sort(perm[n_valid:]), np.sort(perm[:n_valid])

    def _threads_for(self, rows: int) -> int:
        """Torch threads for steps of ``rows`` rows (see :mod:`polyhead.parallel`): one for
        small work, on a busy machine and under outer parallelism."""
        from ..parallel import net_threads

        return net_threads(self._step_work(rows), self.n_threads)

    def _step_work(self, rows: int) -> int:
        """Multiply-adds of a step of ``rows`` rows through the trunk and heads."""
        widths = [getattr(self, "_n_inputs", 1), *(int(h) for h in self.hidden),
                  *(int(h) for h in self.head_hidden),
                  sum(t.head_width for t in getattr(self, "task_states_", []))]
        per_row = sum(a * b for a, b in itertools.pairwise(widths))
        return rows * per_row * self.n_ensemble_ * max(1, self.experts)

    def _batch_size(self, n_train: int) -> int:
        if self.batch_size != "auto":
            return int(self.batch_size)
        return int(min(256, max(32, 2 ** math.floor(math.log2(max(n_train, 1) / 16)))))

    @property
    def _own_batches(self) -> bool:
        """Packed members each see their own shuffle; batch-ensemble members share batches."""
        return self.n_ensemble_ > 1 and self.ensemble == "packed"

    def fit_loop(self, features: np.ndarray,
                 targets: dict[str, tuple[np.ndarray, np.ndarray | None]]) -> None:
        """Epochs of training with validation, early stopping and the learning-rate schedule.

        ``targets``: per task, its encoded targets and its weights (None: every label present,
        equal weights; else 0 where missing or out of its condition).
        """
        import torch

        train_idx, valid_idx = self._split(len(features))
        self.validation_indices_ = valid_idx
        self.batch_size_ = self._batch_size(len(train_idx))
        device = torch.device(self.device)

        def tensors(idx: np.ndarray) -> tuple[Any, dict[str, tuple[Any, Any]]]:
            x = torch.from_numpy(features[idx]).to(device)
            # A task with every label present and equal weights needs no weights: None takes
            # the plain-mean path.
            t = {k: (torch.from_numpy(v[idx]).to(device),
                     None if w is None or bool((w[idx] == 1).all()) else torch.from_numpy(w[idx]).to(device))
                 for k, (v, w) in targets.items()}
            return x, t

        train, valid = tensors(train_idx), (tensors(valid_idx) if len(valid_idx) else None)
        self.train_epochs(lambda generator: self.run_epoch(*train, generator=generator),
                          None if valid is None else (lambda: self.evaluate_losses(*valid)))
        scored: dict[tuple[int | None, int], np.ndarray] = {}  # each set of weights scored once
        if valid is not None and self._best_epoch_mode == "auto":
            self._keep_task_epochs_beyond_noise(*valid, scored)
        blocks = int(self.__dict__.get("_score_blocks", 0))  # set by numeric_embedding="auto"
        if valid is not None and blocks:
            self._valid_blocks = self._block_losses(*valid, blocks, scored)

    def _scored_blocks(self, x: Any, targets: dict[str, tuple[Any, Any]], n_blocks: int,
                       epoch: int | None, scored: dict[tuple[int | None, int], np.ndarray]) -> np.ndarray:
        """:meth:`_block_task_losses` of the module's weights (``epoch`` None) or of a kept
        snapshot, computed once per fit: the per-task epochs and the embedding choice score
        the same weights."""
        key = (epoch, n_blocks)
        if key not in scored:
            state = None if epoch is None else self.__dict__["_snapshots"][epoch]
            scored[key] = self._block_task_losses(x, targets, n_blocks, state)
        return scored[key]

    def _block_task_losses(self, x: Any, targets: dict[str, tuple[Any, Any]], n_blocks: int,
                           weights: Any = None) -> np.ndarray:
        """Per-task losses ``(blocks, tasks)`` on ``n_blocks`` runs of the validation rows (a
        random sample, so each run is one too), with the module's weights or ``weights`` (a
        snapshot). A run without a task's labels adds no loss to it."""
        import torch
        from torch.func import functional_call

        if weights is not None:
            self._forward = lambda inputs: functional_call(self.module_, weights, (inputs,))
        try:
            edges = np.linspace(0, x.shape[0], min(n_blocks, x.shape[0]) + 1).astype(int)
            rows = []
            with torch.inference_mode():
                outputs = self._validation_outputs(x)  # one forward pass, then a loss per run
                for a, b in itertools.pairwise(edges):
                    part = {k: (v[a:b], None if w is None else w[a:b]) for k, (v, w) in targets.items()}
                    losses = self._losses_of(_row_range(outputs, a, b), part)
                    rows.append(np.nan_to_num(losses.cpu().numpy().astype(float)))
            return np.array(rows)
        finally:
            self.__dict__.pop("_forward", None)

    def _block_losses(self, x: Any, targets: dict[str, tuple[Any, Any]], n_blocks: int,
                      scored: dict[tuple[int | None, int], np.ndarray]) -> np.ndarray:
        """The weighted total loss, on each run of validation rows, of the weights that predict
        (each task's own epoch where it has one): paired per block, two fits' losses say whether
        one is better by more than the noise of a small validation split."""
        weights = np.array([t.task.weight for t in self.task_states_], dtype=float)
        losses = self._scored_blocks(x, targets, n_blocks, None, scored).copy()
        epochs = getattr(self, "task_best_epochs_", {})
        for epoch in self.__dict__.get("_snapshots", {}):
            own = [i for i, t in enumerate(self.task_states_) if epochs.get(t.name) == epoch]
            if own:
                losses[:, own] = self._scored_blocks(x, targets, n_blocks, epoch, scored)[:, own]
        return losses @ weights

    def _keep_task_epochs_beyond_noise(self, x: Any, targets: dict[str, tuple[Any, Any]],
                                       scored: dict[tuple[int | None, int], np.ndarray]) -> None:
        """``best_epoch="auto"``: a task keeps its own best epoch only where its validation
        loss there beats the joint epoch's by more than one standard error of the paired
        per-block difference; the others are predicted by the joint epoch's weights."""
        joint = self._scored_blocks(x, targets, _CHOICE_BLOCKS, None, scored)
        epochs: dict[str, int] = dict(self.__dict__["task_best_epochs_"])
        snapshots: dict[int, Any] = self.__dict__["_snapshots"]
        # each kept snapshot once, however many tasks it is the best epoch of
        own_losses = {e: self._scored_blocks(x, targets, _CHOICE_BLOCKS, e, scored) for e in snapshots}
        for i, t in enumerate(self.task_states_):
            own = epochs[t.name]
            if own not in own_losses or not _beyond_noise(joint[:, i] - own_losses[own][:, i]):
                epochs[t.name] = self.best_epoch_
        self.task_best_epochs_ = epochs
        self._snapshots = {e: w for e, w in snapshots.items() if e in set(epochs.values())}

    def train_epochs(self, train: Any, valid: Any, forward: Any = None) -> None:
        """The epochs: ``train(generator)`` runs one over the training rows and returns the mean
        per-task losses, ``valid()`` gives the per-task validation losses (None: no
        validation); history, the learning-rate schedule, best epochs and early stopping.
        ``forward``: what trains the module (a distributed wrapper; default: the module)."""
        import torch

        device = torch.device(self.device)
        self.optimizer_ = self.build_optimizer()
        scheduler = self.build_scheduler(self.optimizer_)
        self._forward = forward or (torch.compile(self.module_) if self.compile else self.module_)
        self._fast: Any = False  # run_epoch's scripted path, decided on the first epoch
        generator = torch.Generator().manual_seed(self._seed)
        weights = torch.tensor([t.task.weight for t in self.task_states_], device=device)
        names = [t.name for t in self.task_states_]
        self.history_: list[dict[str, Any]] = []
        watch = self.early_stopping and valid is not None
        tracker = _BestEpochs(names, per_task=self._best_epoch_mode in ("per_task", "auto") and watch)
        self._printer = _EpochPrinter(names) if self.verbose else None
        cancel = self.__dict__.get("_cancel")  # set by numeric_embedding="auto"
        for epoch in range(1, self.max_epochs + 1):
            if cancel is not None and cancel.is_set():
                raise PolyheadError("training stopped: the other numeric-embedding candidate "
                                    "failed or the fit was interrupted")
            start = time.perf_counter()
            train_losses = train(generator)
            valid_losses = valid() if valid is not None else None
            monitored = float((weights * (valid_losses if valid_losses is not None else train_losses)).sum())
            lr = self.optimizer_.param_groups[0]["lr"]
            record = {"epoch": epoch, "train_loss": float((weights * train_losses).sum()),
                      "valid_loss": monitored if valid_losses is not None else None,
                      "train": dict(zip(names, train_losses.tolist(), strict=True)),
                      "valid": (dict(zip(names, valid_losses.tolist(), strict=True))
                                if valid_losses is not None else None),
                      "lr": lr, "task_weights": dict(zip(names, self.weighting_.effective_weights(), strict=True)),
                      "seconds": 0.0}
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(monitored)
            elif scheduler is not None:
                scheduler.step()
            improved = tracker.update(epoch, monitored, None if valid_losses is None
                                      else valid_losses.tolist(), self._snapshot if watch else None)
            record["seconds"] = time.perf_counter() - start
            self.history_.append(record)
            self.weighting_.on_epoch_end(train_losses)
            self.on_epoch_end(record, improved)
            if not math.isfinite(monitored):
                raise PolyheadError(f"training diverged at epoch {epoch} (loss {monitored}); "
                                    "try a smaller lr")
            if watch and epoch - tracker.last_improvement >= self.patience_:
                break
        if watch:
            module_state, weighting_state = tracker.joint_state
            self.module_.load_state_dict(module_state)
            self.weighting_.load_state_dict(weighting_state)
        self.best_epoch_ = tracker.joint_epoch
        self.task_best_epochs_ = tracker.task_epochs(self.best_epoch_)
        self._snapshots = tracker.task_snapshots(self.best_epoch_)
        self.n_iter_ = len(self.history_)
        if self._fast:  # its gradient buffers are not kept
            for p in self.module_.parameters():
                p.grad = None
        del self._forward, self._fast  # a compiled wrapper is not kept (nor saved) after training
        self.module_.eval()

    def _snapshot(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return ({k: v.detach().clone() for k, v in self.module_.state_dict().items()},
                copy.deepcopy(self.weighting_.state_dict()))

    def on_epoch_end(self, record: dict[str, Any], improved: bool) -> None:
        """Called after each epoch with its history record; prints it when ``verbose``.

        Override (or assign on an instance) to report progress elsewhere, as the CLI does.
        """
        if self._printer is not None:
            self._printer(record, improved)

    def run_epoch(self, x: Any, targets: dict[str, tuple[Any, Any]], *, generator: Any) -> Any:
        """One pass over the training rows in shuffled mini-batches; mean per-task losses.

        A plain MLP trained on closed-form losses runs the whole epoch as one TorchScript call
        with a hand-written backward pass (:mod:`polyhead.nn.fast_epoch`); anything else steps
        through :meth:`train_step`."""
        import torch

        fast = getattr(self, "_fast", None)
        if fast is False:  # the first epoch of this fit decides
            from ..nn import fast_epoch

            fast = self._fast = (fast_epoch.FastEpoch(self) if fast_epoch.applies(self, self._forward)
                                 else None)
        if fast is not None:
            return fast(x, targets, generator)
        self.module_.train()
        n = x.shape[0]
        k = self.n_ensemble_
        if not self._own_batches:
            perm = torch.randperm(n, generator=generator).to(x.device)
        else:  # each member its own shuffle: (K, n) positions, batches become (K, B, ...)
            perm = torch.stack([torch.randperm(n, generator=generator) for _ in range(k)]).to(x.device)
        # One gather per epoch, then contiguous slices: no per-row or per-batch indexing work;
        # for a large x (its K shuffled copies would cost more than GATHER_LIMIT values), one
        # gather per batch instead.
        from ..nn.fast_epoch import GATHER_LIMIT

        whole = perm.numel() * x.shape[1] <= GATHER_LIMIT
        if whole:
            x = x[perm]
            targets = {name: (v[perm], None if w is None else w[perm]) for name, (v, w) in targets.items()}
        losses, sizes = [], []
        for start in range(0, n, self.batch_size_):
            stop = min(start + self.batch_size_, n)
            if stop - start == 1 and n > 1 and self.norm == "batch":
                continue  # batch norm cannot train on one row
            rows: Any = slice(start, stop) if not self._own_batches else (slice(None), slice(start, stop))
            if not whole:
                rows = perm[rows]
            batch = {name: (v[rows], None if w is None else w[rows])
                     for name, (v, w) in targets.items()}
            if k > 1 and not self._own_batches:  # shared batches: every member, the same rows
                batch = _expand(batch, k)
            losses.append(self.train_step(x[rows], batch))
            sizes.append(stop - start)
        # summed once per epoch: no per-step accumulation ops
        weights = torch.tensor(sizes, dtype=torch.float32, device=x.device) / sum(sizes)
        return weights @ torch.stack(losses)

    def train_step(self, x: Any, targets: dict[str, tuple[Any, Any]]) -> Any:
        """One optimiser step on a batch; returns the per-task losses (detached)."""
        self.optimizer_.zero_grad(set_to_none=True)
        losses = self.compute_loss(getattr(self, "_forward", self.module_)(x), targets)
        total = self.weighting_(losses)
        if self._own_batches:  # losses average over independent members; times K, each
            total = total * self.n_ensemble_  # member's gradient is its own loss's
        total.backward()
        self.weighting_.after_backward(losses)
        # LeanAdamW.update skips the optimiser wrapper's per-call hooks (see nn/optim.py)
        getattr(self.optimizer_, "update", self.optimizer_.step)()
        return losses.detach()

    def compute_loss(self, outputs: dict[str, Any], targets: dict[str, tuple[Any, Any]]) -> Any:
        """The vector of per-task losses (each kind's own), each over its weighted labels.

        Tasks of one kind whose losses can be computed side by side (binary, regression) are
        one block: one call for all of them (see :meth:`polyhead.kinds.Kind.stack_key`)."""
        import torch

        units = getattr(self, "_units", None)
        if units is None:
            return torch.stack([t.loss(outputs[t.name], *targets[t.name]) for t in self.task_states_])
        parts = []
        for unit in units:
            if unit.block:
                fused = getattr(outputs, "fused", None)
                span = unit.span(getattr(outputs, "spans", {})) if fused is not None else None
                if fused is not None and span is not None:
                    raw = fused[..., span[0]:span[1]]
                else:
                    raw = torch.cat([outputs[n] for n in unit.names], dim=-1)
                parts.append(unit.state.stacked_loss(raw, *targets[unit.key]))
            else:
                parts.append(unit.state.loss(outputs[unit.key], *targets[unit.key]).reshape(1))
        losses = torch.cat(parts)
        order = getattr(self, "_loss_order", None)
        return losses if order is None else losses[order]

    def evaluate_losses(self, x: Any, targets: dict[str, tuple[Any, Any]]) -> Any:
        """Per-task losses on held-out rows, without gradients; an ensemble's are those of its
        averaged prediction (the ensemble is what predicts)."""
        import torch

        with torch.inference_mode():
            return self._losses_of(self._validation_outputs(x), targets)

    def _validation_outputs(self, x: Any) -> dict[str, Any]:
        """What :meth:`_losses_of` scores, per row: one network's raw outputs, or an ensemble's
        averaged outputs per task (call under ``torch.inference_mode``)."""
        import torch

        self.module_.eval()
        forward = getattr(self, "_forward", self.module_)
        # in chunks of rows, as predict does: a large validation set's hidden activations for
        # every member would otherwise all be held at once
        chunk = max(1, _PREDICT_CHUNK // self.n_ensemble_)
        starts = range(0, x.shape[0], chunk)
        if self.n_ensemble_ == 1:
            parts = [forward(x[s:s + chunk]) for s in starts]
            return parts[0] if len(parts) == 1 else {
                name: torch.cat([p[name] for p in parts]) for name in parts[0]}
        means: dict[str, list[Any]] = {t.name: [] for t in self.task_states_}
        for s in starts:
            raw = forward(x[s:s + chunk])
            for t in self.task_states_:
                means[t.name].append(t.output(raw[t.name]).mean(0))
        return {name: torch.cat(parts) for name, parts in means.items()}

    def _losses_of(self, outputs: dict[str, Any], targets: dict[str, tuple[Any, Any]]) -> Any:
        """Per-task losses of :meth:`_validation_outputs` (or of some of their rows)."""
        import torch

        if self.n_ensemble_ == 1:
            return self.compute_loss(outputs, targets)
        per_task = _task_targets(getattr(self, "_units", None), targets)
        return torch.stack([t.output_loss(outputs[t.name], *per_task[t.name])
                            for t in self.task_states_])

    # -- persistence -------------------------------------------------------------------------
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Manifest entries and tensors for :func:`polyhead.persistence.save`."""
        tensors = {f"module.{k}": v.detach().cpu().numpy() for k, v in self.module_.state_dict().items()}
        tensors.update({f"weighting.{k}": v.detach().cpu().numpy()
                        for k, v in self.weighting_.state_dict().items()})
        for epoch, state in self._snapshots.items():
            tensors.update({f"snapshot{epoch}.{k}": v.detach().cpu().numpy() for k, v in state.items()})
        layout = self._layout
        state = {
            "architecture": {
                "in_features": self.features_.n_outputs_,
                "input_names": self.features_.feature_names_out_,
                "hidden": [int(h) for h in self.hidden], "activation": self.activation,
                "n_ensemble": int(self.n_ensemble_), "ensemble": self.ensemble,
                "dropout": self.dropout, "norm": self.norm,
                "numeric_embedding": self.numeric_embedding_ if layout["embedded"] else None,
                "embedded": layout["embedded"], "codes": layout["codes"],
                "cardinalities": layout["cardinalities"],
                "n_bins": int(self.n_bins_), "d_embedding": int(self.d_embedding),
                "head_hidden": [int(h) for h in self.head_hidden], "experts": int(self.experts),
                "fused": layout.get("fused", True),
                "heads": {t.name: t.head_width for t in self.task_states_},
                "n_parameters": int(sum(p.numel() for p in self.module_.parameters())),
                "summary": str(self.module_),
            },
            "training": {"n_iter": self.n_iter_, "best_epoch": self.best_epoch_, "seed": self._seed,
                         "patience": int(self.patience_),
                         "probe_members": int(self.probe_members_),
                         "task_best_epochs": self.task_best_epochs_,
                         "embedding_scores": dict(getattr(self, "embedding_scores_", {})),
                         "world_size": int(getattr(self, "world_size_", 1)),
                         "streamed": bool(getattr(self, "streamed_", False))},
            "history": self.history_,
        }
        table = getattr(self, "twins_", None)
        if table is not None:
            state["twins"] = table.manifest()
            tensors.update(table.tensors())
        return state, tensors

    @classmethod
    def _check_manifest(cls, manifest: dict[str, Any], states: list[Any], encoder: Any) -> None:
        """The architecture section, checked against the tasks and the encoder (JSON only)."""
        from ..exceptions import ModelFileError
        from ..nn.names import ACTIVATION_NAMES

        arch = manifest.get("architecture")

        def need(condition: bool, what: str) -> None:
            if not condition:
                raise ModelFileError(f"invalid architecture: {what}")

        def count(value: Any, limit: int, low: int = 1) -> bool:
            return isinstance(value, int) and not isinstance(value, bool) and low <= value <= limit

        need(isinstance(arch, dict), "missing")
        assert isinstance(arch, dict)
        n_in = int(encoder.n_outputs_) if encoder is not None else 0
        need(encoder is not None and arch.get("in_features") == n_in,
             f"in_features {arch.get('in_features')!r} differs from the encoder's outputs")
        for key in ("hidden", "head_hidden"):
            sizes = arch.get(key, [])
            need(isinstance(sizes, list) and all(count(h, 1 << 20) for h in sizes), f"{key} {sizes!r}")
        need(count(arch.get("n_ensemble", 1), 4096), f"n_ensemble {arch.get('n_ensemble')!r}")
        need(arch.get("ensemble", "packed") in ("packed", "batch"), f"ensemble {arch.get('ensemble')!r}")
        need(count(arch.get("experts", 0), 256, low=0), f"experts {arch.get('experts')!r}")
        need(arch.get("activation") in ACTIVATION_NAMES, f"activation {arch.get('activation')!r}")
        need(arch.get("norm") in ("layer", "batch", None), f"norm {arch.get('norm')!r}")
        need(arch.get("numeric_embedding") in (None, "ple", "periodic"), "numeric_embedding")
        need(count(arch.get("n_bins", 32), 1024, low=2) and count(arch.get("d_embedding", 16), 4096),
             "n_bins or d_embedding")
        for key in ("embedded", "codes"):
            index = arch.get(key, [])
            need(isinstance(index, list) and all(count(i, n_in - 1, low=0) for i in index)
                 and len(set(index)) == len(index), f"{key} columns")
        cards = arch.get("cardinalities", [])
        need(isinstance(cards, list) and len(cards) == len(arch.get("codes", []))
             and all(count(c, 1 << 24) for c in cards), "cardinalities")
        dropout = arch.get("dropout", 0.0)
        need(isinstance(dropout, (int, float)) and not isinstance(dropout, bool) and 0 <= dropout < 1,
             f"dropout {dropout!r}")
        heads = arch.get("heads")
        need(isinstance(heads, dict) and list(heads) == [s.name for s in states]
             and all(heads[s.name] == s.head_width for s in states), "heads do not match the tasks")
        training = manifest.get("training", {})
        need(isinstance(training, dict) and all(
            isinstance(training.get(k, 0), int) and not isinstance(training.get(k, 0), bool)
            and training.get(k, 0) >= 0 for k in ("n_iter", "best_epoch")), "training")
        world = training.get("world_size", 1)
        need(isinstance(world, int) and not isinstance(world, bool) and 1 <= world <= 1 << 20
             and isinstance(training.get("streamed", False), bool), "world_size or streamed")
        epochs = training.get("task_best_epochs", {})
        need(isinstance(epochs, dict) and set(epochs) <= {s.name for s in states}
             and all(count(e, 1 << 30, low=0) for e in epochs.values()), "task_best_epochs")
        scores = training.get("embedding_scores", {})
        need(isinstance(scores, dict) and all(k in ("none", "ple") or _grown_bins_key(k) for k in scores) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in scores.values()),
            "embedding_scores")
        need(isinstance(manifest.get("history", []), list), "history")

    def _set_state(self, manifest: dict[str, Any], tensors: dict[str, np.ndarray],
                   files: dict[str, bytes] | None = None) -> None:
        """Rebuild the network from a manifest and its tensors (see :func:`polyhead.load`).

        The network is first built on torch's "meta" device, which allocates nothing, and its
        parameter shapes are compared with the file's tensors: a manifest that claims a layer
        of twenty million units is refused before any memory is taken for it.
        """
        import torch

        from ..exceptions import ModelFileError

        arch = manifest["architecture"]
        if int(arch["in_features"]) != self.features_.n_outputs_:
            raise PolyheadError(f"architecture expects {arch['in_features']} inputs but the "
                                f"feature encoder makes {self.features_.n_outputs_}")
        self.hidden = tuple(int(h) for h in arch["hidden"])
        self.head_hidden = tuple(int(h) for h in arch.get("head_hidden", []))
        self.n_ensemble_ = int(arch.get("n_ensemble", 1))
        self.numeric_ = str(getattr(self.features_, "numeric", "standard"))
        self.ensemble = str(arch.get("ensemble", "packed"))
        self.experts = int(arch.get("experts", 0))
        self.numeric_embedding_ = arch.get("numeric_embedding")
        self.n_bins_ = int(arch.get("n_bins", 32))
        self.d_embedding = int(arch.get("d_embedding", 16))
        legacy = "fused" not in arch  # format 1: per-task heads (packed ensembles: one "heads")
        tensors = dict(tensors)
        if legacy and self.n_ensemble_ > 1:
            tensors = {k.replace("module.heads.", "module.out.", 1): v for k, v in tensors.items()}
        self._layout = {"embedded": list(arch.get("embedded", [])), "codes": list(arch.get("codes", [])),
                        "cardinalities": list(arch.get("cardinalities", [])), "edges": None,
                        "fused": bool(arch.get("fused", self.n_ensemble_ > 1))}
        with torch.device("meta"):
            shapes = {k: tuple(v.shape) for k, v in self.build_module(
                int(arch["in_features"])).state_dict().items()}
        given = {k[len("module."):]: tuple(v.shape) for k, v in tensors.items() if k.startswith("module.")}
        if shapes != given:
            wrong = sorted(set(shapes) ^ set(given)) or sorted(k for k in shapes if shapes[k] != given[k])
            name = wrong[0]
            raise ModelFileError(f"the weights do not match the architecture: {name} is "
                                 f"{given.get(name, 'missing')} in the file, "
                                 f"{shapes.get(name, 'not expected')} by the manifest")
        self.module_ = self.build_module(int(arch["in_features"])).to(self.device)
        self.weighting_ = self.build_weighting()

        def part(prefix: str) -> dict[str, Any]:
            return {k[len(prefix):]: torch.from_numpy(v.copy()) for k, v in tensors.items()
                    if k.startswith(prefix)}

        self.module_.load_state_dict(part("module."), strict=True)
        self.weighting_.load_state_dict(part("weighting."), strict=True)
        self.module_.eval()
        training = manifest.get("training", {})
        self.n_iter_ = int(training.get("n_iter", 0))
        self.best_epoch_ = int(training.get("best_epoch", 0))
        self.patience_ = self._preset_count(training, "patience")
        self.probe_members_ = self._preset_count(training, "probe_members")
        self._seed = training.get("seed")
        self.world_size_ = int(training.get("world_size", 1))
        self.streamed_ = bool(training.get("streamed", False))
        self.embedding_scores_ = {str(k): float(v) for k, v in training.get("embedding_scores", {}).items()}
        self.task_best_epochs_ = {t.name: int(training.get("task_best_epochs", {}).get(t.name, self.best_epoch_))
                                  for t in self.task_states_}
        self._snapshots = {}
        for epoch in set(self.task_best_epochs_.values()) - {self.best_epoch_}:
            state = part(f"snapshot{epoch}.")
            if {k: tuple(v.shape) for k, v in state.items()} != shapes:
                raise ModelFileError(f"the weights of epoch {epoch} do not match the architecture")
            self._snapshots[epoch] = state
        self.history_ = list(manifest.get("history", []))
        self.twins_ = (None if manifest.get("twins") is None else
                       TwinTable.from_file(manifest["twins"], tensors, self.task_states_))

    # -- predict -----------------------------------------------------------------------------
    def _member_chunks(self, X: pd.DataFrame, mean: bool = False) -> Iterator[dict[str, np.ndarray]]:
        """Per chunk of rows, per task, every member's outputs ``(K, rows, ...)`` (as its kind
        documents them), or with ``mean=True`` their mean over members. A task whose best epoch
        was not the joint one is computed with that epoch's weights."""
        import torch
        from torch.func import functional_call

        features = self.features_.transform(X)
        if self.module_.training:
            self.module_.eval()
        chunk = max(1, _PREDICT_CHUNK // self.n_ensemble_)
        by_epoch: dict[int, list[Any]] = {}
        for t in self.task_states_:
            by_epoch.setdefault(getattr(self, "task_best_epochs_", {}).get(t.name, -1), []).append(t)
        snapshots = getattr(self, "_snapshots", {})
        self._n_inputs = features.shape[1]
        with _threads(self._threads_for(min(len(features), chunk))), torch.inference_mode():
            for start in range(0, len(features), chunk):
                x = torch.from_numpy(features[start:start + chunk]).to(self.device)
                part: dict[str, np.ndarray] = {}
                for epoch, tasks in by_epoch.items():
                    raw = (functional_call(self.module_, snapshots[epoch], (x,))
                           if epoch in snapshots else self.module_(x))
                    for t in tasks:
                        values = t.output(raw[t.name]).double()
                        if self.n_ensemble_ == 1:
                            values = values[None]
                        part[t.name] = (values.mean(0) if mean else values).cpu().numpy()
                table = getattr(self, "twins_", None)
                if table is not None:
                    keys = twins.row_keys(features[start:start + chunk])
                    part = table.blend(self.task_states_, keys, part, members=not mean)
                yield part

    def _member_outputs(self, X: pd.DataFrame) -> dict[str, np.ndarray]:
        """Per task, every member's outputs ``(K, n, ...)``."""
        parts = list(self._member_chunks(X))
        return {t.name: np.concatenate([p[t.name] for p in parts], axis=1) for t in self.task_states_}

    def _predict_outputs(self, X: pd.DataFrame) -> dict[str, np.ndarray]:
        # Averaging probabilities (not logits) keeps each member's calibration. Chunk by chunk,
        # so the members' outputs of a large batch are never all held at once, into arrays
        # allocated once: many small long-lived parts between the chunks' large temporaries
        # fragment the heap (a 1M-row batch held 2 GB resident that way).
        out: dict[str, np.ndarray] = {}
        start = 0
        for part in self._member_chunks(X, mean=True):
            rows = len(next(iter(part.values())))
            if not out and rows == len(X):
                return part
            for name, values in part.items():
                if name not in out:
                    out[name] = np.empty((len(X), *values.shape[1:]), dtype=values.dtype)
                out[name][start:start + rows] = values
            start += rows
        return out

    def predict(self, X: Any, return_std: bool = False, *, expected: bool = False) -> Any:
        """Predictions per task (see :meth:`MultiTaskMixin.predict`).

        With ``return_std=True``, also the standard deviation across ensemble members of each
        numeric task's prediction (regression, count), in the target's units (zeros when
        ``n_ensemble=1``), shaped like those tasks' prediction columns.
        """
        if not return_std:
            return super().predict(X, expected=expected)
        from sklearn.utils.validation import check_is_fitted

        from .base import check_outputs

        check_is_fitted(self, "task_states_")
        Xf = self._check_X(X, fit=False)
        members = self._member_outputs(Xf)
        index = X.index if isinstance(X, pd.DataFrame) else pd.RangeIndex(len(Xf))
        outputs = {name: m.mean(axis=0) for name, m in members.items()}
        check_outputs(outputs, index)
        pred = self._format(outputs, index, expected)
        stds = {t.name: members[t.name].std(axis=0) for t in self.task_states_
                if not t.has_proba and members[t.name].ndim == 2}
        if not stds:
            raise PolyheadError("return_std=True needs at least one regression or count task")
        if self._y_format in ("frame", "series"):
            std: Any = pd.DataFrame(stds, index=index)
            if self._y_format == "series":
                std = std.iloc[:, 0]
        else:
            std = np.column_stack(list(stds.values()))
            std = std[:, 0] if self._y_format == "1d" else std
        return pred, std


def _row_range(outputs: dict[str, Any], a: int, b: int) -> dict[str, Any]:
    """Rows ``a:b`` of per-task outputs (and of a fused output layer's whole tensor)."""
    from ..nn.model import HeadOutputs

    part = HeadOutputs({name: value[a:b] for name, value in outputs.items()})
    fused = getattr(outputs, "fused", None)
    if fused is not None:
        part.fused, part.spans = fused[a:b], outputs.spans  # type: ignore[attr-defined]
    return part


def quantile_edges(values: np.ndarray, n_bins: int) -> np.ndarray:
    from ..nn.inputs import quantile_bins

    return quantile_bins(values, n_bins)


class _Unit:
    """One loss computation: a task, or a block of tasks of one stackable kind."""

    def __init__(self, states: list[Any], positions: list[int]) -> None:
        self.state = states[0]
        self.names = [s.name for s in states]
        self.positions = positions
        self.block = len(states) > 1
        self.key = f"__block_{positions[0]}" if self.block else states[0].name
        self._span: Any = False

    def span(self, spans: dict[str, tuple[int, int]]) -> tuple[int, int] | None:
        """The block's columns in a fused output, when they are contiguous (cached)."""
        if self._span is False:
            cols = [spans[n] for n in self.names]
            contiguous = all(a[1] == b[0] for a, b in itertools.pairwise(cols))
            self._span = (cols[0][0], cols[-1][1]) if contiguous else None
        return self._span


def _loss_units(states: list[Any]) -> list[_Unit]:
    """Tasks grouped into blocks by their kinds' stack keys (one-column heads only)."""
    groups: dict[Any, list[int]] = {}
    units: list[_Unit] = []
    for i, state in enumerate(states):
        key = state.stack_key() if state.head_width == 1 else None
        if key is None:
            units.append(_Unit([state], [i]))
        else:
            groups.setdefault(key, []).append(i)
    for positions in groups.values():
        if len(positions) == 1:
            units.append(_Unit([states[positions[0]]], positions))
        else:
            units.append(_Unit([states[i] for i in positions], positions))
    units.sort(key=lambda u: u.positions[0])
    return units


def _unit_targets(units: list[_Unit], per_task: dict[str, tuple[np.ndarray, np.ndarray | None]]
                  ) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """Targets per unit: a block's targets and weights side by side, ``(n, T)``."""
    out: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    for unit in units:
        if not unit.block:
            out[unit.key] = per_task[unit.key]
            continue
        values = np.column_stack([per_task[n][0] for n in unit.names]).astype(np.float32)
        weights = [per_task[n][1] for n in unit.names]
        weight = None if all(w is None for w in weights) else np.column_stack(
            [np.ones(len(values), np.float32) if w is None else w for w in weights])
        out[unit.key] = (values, weight)
    return out


def _task_targets(units: list[_Unit] | None, targets: dict[str, tuple[Any, Any]]) -> dict[str, tuple[Any, Any]]:
    """Per-task targets again, from the units' (a block's column j is its j-th task)."""
    if units is None:
        return targets
    out: dict[str, tuple[Any, Any]] = {}
    for unit in units:
        v, w = targets[unit.key]
        if not unit.block:
            out[unit.key] = (v, w)
            continue
        for j, name in enumerate(unit.names):
            out[name] = (v[..., j], None if w is None else w[..., j])
    return out


def _order(units: list[_Unit]) -> Any:
    """Index that puts the units' concatenated losses back in task order (None: already)."""
    import torch

    flat = [p for u in units for p in u.positions]
    if flat == list(range(len(flat))):
        return None
    return torch.as_tensor(np.argsort(flat))


def _expand(batch: dict[str, tuple[Any, Any]], k: int) -> dict[str, tuple[Any, Any]]:
    """Targets and weights repeated for K members that see the same rows."""
    return {name: (v.expand(k, *v.shape), None if w is None else w.expand(k, *w.shape))
            for name, (v, w) in batch.items()}


class _BestEpochs:
    """The epochs whose weights predict: the best total validation loss (joint) and, with
    ``per_task``, each task's own best, keeping only the snapshots some task still needs.
    Only the joint loss resets the patience: a task's own best is looked for among the epochs
    the joint stopping trains (waiting on every task as well made fits 30% longer on the
    quality benchmark for the same error)."""

    def __init__(self, names: list[str], per_task: bool) -> None:
        self.names = names
        self.per_task = per_task
        self.best_total = math.inf
        self.best_task = [math.inf] * len(names)
        self.joint_epoch = 0
        self.joint_state: Any = None
        self.epochs = [0] * len(names)
        self.states: dict[int, Any] = {}
        self.last_improvement = 0

    def update(self, epoch: int, total: float, per_task: list[float] | None, snapshot: Any) -> bool:
        improved = total < self.best_total - 1e-7 * abs(self.best_total) if math.isfinite(self.best_total) else True
        state = None
        if improved:
            self.best_total, self.joint_epoch = total, epoch
            if snapshot is not None:
                state = snapshot()
                self.joint_state = state
            self.last_improvement = epoch
        if self.per_task and per_task is not None:
            for i, loss in enumerate(per_task):
                if loss < self.best_task[i] - 1e-7 * abs(self.best_task[i]) if math.isfinite(self.best_task[i]) else True:
                    self.best_task[i], self.epochs[i] = loss, epoch
                    if state is None and snapshot is not None:
                        state = snapshot()
            if state is not None:
                self.states[epoch] = state[0]
            live = set(self.epochs) | {self.joint_epoch}
            self.states = {e: s for e, s in self.states.items() if e in live}
        return improved

    def task_epochs(self, joint: int) -> dict[str, int]:
        if not self.per_task:
            return {n: joint for n in self.names}
        return dict(zip(self.names, self.epochs, strict=True))

    def task_snapshots(self, joint: int) -> dict[int, Any]:
        if not self.per_task:
            return {}
        return {e: s for e, s in self.states.items() if e != joint and e in set(self.epochs)}


class _EpochPrinter:
    """A line per epoch, with per-task validation losses, for ``verbose=1``."""

    def __init__(self, names: list[str]) -> None:
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False)
        self.names = names

    def __call__(self, record: dict[str, Any], improved: bool) -> None:
        losses = record["valid"] or record["train"]
        tasks = "  ".join(f"{n} {losses[n]:.4f}" for n in self.names)
        valid = record["valid_loss"]
        mark = " *" if improved else ""
        valid_text = f"valid {valid:.4f}" if valid is not None else "valid -"
        self.console.print(f"epoch {record['epoch']:>4}  train {record['train_loss']:.4f}  "
                           f"{valid_text}  [{tasks}]  lr {record['lr']:.2g}  "
                           f"{record['seconds'] * 1000:.0f} ms{mark}", markup=False)
