"""The ``polyhead`` command line.

Only typer and rich are imported at start-up: torch and the models load inside the commands
that need them, so ``polyhead --help`` is instant.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

import typer

app = typer.Typer(
    help="Multi-task learning on tabular data: one model, several targets of mixed kinds.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from ._version import __version__

        print(f"polyhead {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Multi-task learning on tabular data: one model, several targets of mixed kinds.

    Add --debug to any command to see the traceback of an internal error.
    """


class UsageError(Exception):
    """Bad usage or bad input: reported as one line, exit code 2."""


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # rich assumes 80 columns off a terminal: too narrow for metric tables in logs and pipes
    width = None if stream.isatty() else 160
    return Console(stderr=stderr, highlight=False, width=width)


def _print_table(frame: Any, title: str, floatfmt: str = "{:.3f}") -> None:
    import math

    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column(frame.index.name or "", style="bold")
    for col in frame.columns:
        table.add_column(str(col), justify="right")
    for idx, *row in frame.itertuples():
        cells = []
        for value in row:
            if isinstance(value, float):
                cells.append("-" if math.isnan(value) else floatfmt.format(value))
            else:
                cells.append(str(value))
        table.add_row(str(idx), *cells)
    _console().print(table)


MODELS = {
    "net": ("polyhead.models.net", "MultiTaskNet"),
    "forest": ("polyhead.models.forest", "MultiTaskForest"),
    "gbm": ("polyhead.models.gbm", "MultiTaskGBM"),
    "linear": ("polyhead.models.linear", "MultiTaskLinear"),
}


def _model_class(name: str) -> Any:
    import importlib

    if name not in MODELS:
        raise UsageError(f"unknown --model {name!r}; available: {', '.join(MODELS)}")
    module, attr = MODELS[name]
    return getattr(importlib.import_module(module), attr)


def _parse_value(text: str) -> Any:
    if "," in text:
        return tuple(_parse_value(t) for t in text.split(",") if t.strip())
    low = text.strip().lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text.strip()


def _accepts(cls: Any, key: str, text: str) -> bool:
    """Whether ``cls``'s parameter ``key`` takes the string ``text`` as one of its options."""
    from ._params import Options

    return any(isinstance(c, Options) and text in c.values
               for c in getattr(cls, "_parameter_constraints", {}).get(key, ()))


def _parse_params(items: list[str], cls: Any) -> dict[str, Any]:
    defaults = cls().get_params()
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--param {item!r}: expected name=value, e.g. --param max_epochs=200")
        if key not in defaults or key == "tasks":
            names = ", ".join(k for k in defaults if k != "tasks")
            raise UsageError(f"--param {key!r} is not a parameter of {cls.__name__}; "
                             f"choose from {names}")
        parsed = _parse_value(value)
        if parsed is None and _accepts(cls, key, value.strip().lower()):
            parsed = value.strip().lower()  # numeric_embedding=none is a choice, not "unset"
        if isinstance(defaults[key], tuple) and not isinstance(parsed, tuple):
            parsed = (parsed,)
        params[key] = parsed
    return params


def _split_names(values: list[str] | None) -> list[str]:
    return [n.strip() for v in values or [] for n in v.split(",") if n.strip()]


def _targets(data: Any, target: list[str], prefix: str | None, source: Any,
             given: list[str] | None = None, otherwise: list[str] | None = None) -> list[Any]:
    from dataclasses import replace

    from .tasks import Task

    tasks = [Task.parse(t) for t in target]
    conditions: dict[str, dict[str, Any]] = {}
    for item in given or []:
        name, sep, condition = item.partition(":")
        if not sep or not name.strip() or not condition.strip():
            raise UsageError(f"--given {item!r}: expected TASK:CONDITION, e.g. amount:buys or "
                             "amount:grade=high")
        conditions.setdefault(name.strip(), {})["given"] = condition.strip()
    for item in otherwise or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--otherwise {item!r}: expected TASK=VALUE, e.g. amount=0")
        conditions.setdefault(name.strip(), {})["otherwise"] = _parse_value(value)
    names = {t.name for t in tasks}
    for name, change in conditions.items():
        if name not in names:
            raise UsageError(f"--given/--otherwise name task {name!r}, which is not a --target")
        tasks = [replace(t, **change) if t.name == name else t for t in tasks]
    if prefix:
        from .tasks import group_label_columns

        named = [Task(c[len(prefix):] or c, column=c) for c in data.columns if str(c).startswith(prefix)]
        if not conditions:  # a block of 0/1 label columns is one multilabel task, named by the prefix
            named = group_label_columns(named, data, name=prefix.rstrip("_-. :") or "labels",
                                        taken=[t.name for t in tasks])
        tasks += named
    if not tasks:
        raise UsageError("no targets: give --target name[:kind][=column(s)] (repeatable) "
                         "or --target-prefix PREFIX")
    for t in tasks:
        for col in t.source_columns:
            if col not in data.columns:
                shown = ", ".join(map(str, list(data.columns)[:20]))
                raise UsageError(f"target {t.name!r}: column {col!r} is not in {source} "
                                 f"(columns: {shown})")
    return tasks


def _metrics_json(table: Any) -> dict[str, Any]:
    return {str(task): {str(k): v for k, v in row.items()} for task, row in table.iterrows()}


def _plain_json(value: Any) -> Any:
    """JSON-ready values: numpy scalars as Python ones, NaN and infinity as null."""
    import math

    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        with contextlib.suppress(ValueError, AttributeError):
            value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_json(v) for v in value]
    return value


def _print_json(value: Any) -> None:
    """One JSON document on stdout: never a NaN literal (strict JSON parsers reject them)."""
    import json

    print(json.dumps(_plain_json(value), allow_nan=False, default=str))


def _read(data: str, *, sep: str | None, encoding: str | None,
          column_types: dict[str, Any] | None = None) -> Any:
    """A whole input file as a DataFrame, its columns checked (unique names, flat values)."""
    from .frames import check_unique_columns
    from .io import read_table

    frame = read_table(data, sep=sep, column_types=column_types, encoding=encoding)
    check_unique_columns(frame, str(data))
    return frame


def _require_matplotlib(what: str) -> None:
    """Fail before any work when the plot extra is missing."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise UsageError(f"{what} needs matplotlib: pip install 'polyhead[plot]'")


def _choose_features(frame: Any, tasks: list[Any], features: list[str], drop: list[str],
                     data: str) -> list[str]:
    """The feature columns: --features, or every column that is neither a target nor dropped."""
    target_cols = list(dict.fromkeys(c for t in tasks for c in t.source_columns))
    dropped = _split_names(drop)
    unknown = [c for c in dropped if c not in frame.columns]
    if unknown:
        raise UsageError(f"--drop column {unknown[0]!r} is not in {data}")
    named = _split_names(features)
    for col in named:
        if col not in frame.columns:
            raise UsageError(f"feature column {col!r} is not in {data}")
        if col in target_cols:
            owner = next(t.name for t in tasks if col in t.source_columns)
            raise UsageError(f"--features names {col!r}, the target column of task {owner!r}; "
                             "a target cannot also be a feature")
    chosen = [c for c in (named or frame.columns) if c not in target_cols and c not in dropped]
    if not chosen:
        raise UsageError("no feature columns left after removing targets and --drop")
    return chosen


@app.command()
def fit(
    data: str = typer.Argument(..., help="Training data: .csv (.gz/.zst), .parquet or .jsonl"),
    output: str = typer.Option(..., "--output", "-o", help="Model directory to write"),
    target: list[str] = typer.Option([], "--target", "-t", help=(
        "A task: name[:kind][=column(s)], e.g. rings:regression, rings_class:multiclass=rings, "
        "tags:multilabel=a,b,c, grade:ordinal(low,mid,high), visits:count, "
        "y:quantile(0.1,0.5,0.9). Repeatable. Kind is inferred when left out.")),
    given: list[str] = typer.Option([], "--given", help=(
        "A condition: TASK:CONDITION, e.g. amount:buys (amount exists only where the binary "
        "task buys is true) or amount:grade=high. Repeatable.")),
    otherwise: list[str] = typer.Option([], "--otherwise", help=(
        "TASK=VALUE: the prediction of a conditional task where its condition is false")),
    target_prefix: str | None = typer.Option(None, "--target-prefix",
                                             help="Every column starting with this is a target"),
    model: str = typer.Option("net", "--model", "-m", help="Model family: net, forest, gbm or linear"),
    features: list[str] = typer.Option([], "--features", help="Feature columns (comma list); default: all non-target columns"),
    drop: list[str] = typer.Option([], "--drop", help="Columns to leave out (comma list)"),
    param: list[str] = typer.Option([], "--param", "-p", help="Model parameter name=value, e.g. hidden=64,64"),
    valid_fraction: float = typer.Option(0.1, "--valid-fraction", help="Rows held out for validation"),
    seed: int = typer.Option(0, "--seed", help="random_state"),
    conformal: float | None = typer.Option(None, "--conformal", help=(
        "Wrap the model in conformal prediction with this alpha (e.g. 0.1): intervals and "
        "sets that cover each task's label with probability 1 - alpha (see polyhead.Conformal)")),
    joint: bool = typer.Option(False, "--joint", help="With --conformal: cover every task of a row at once"),
    force: bool = typer.Option(False, "--force", help="Replace an existing model directory (only a polyhead model)"),
    sep: str | None = typer.Option(None, "--sep", help="CSV delimiter (sniffed by default)"),
    encoding: str | None = typer.Option(None, "--encoding", help="Text encoding of a CSV input (default UTF-8), e.g. latin-1"),
    stream: bool = typer.Option(False, "--stream", help=(
        "Train out of core from Parquet (a file, a directory or a glob), with memory bounded by "
        "a sample and a shuffle buffer: the default for Parquet input to the net")),
    nproc: int = typer.Option(1, "--nproc", help=(
        "Train on N processes of this machine with torch.distributed (streams the input; under "
        "torchrun the process group comes from torchrun instead)")),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary instead of tables"),
) -> None:
    """Fit a multi-task model on a file and save it to a directory."""
    import time

    from . import distributed
    from .frames import check_flat_values
    from .io import check_output
    from .tasks import describe_tasks, fit_tasks, resolve_tasks

    if distributed.planned_rank() == 0:
        check_output(output, kind="model", force=force, inputs=[data])
    if not 0 <= valid_fraction < 1:
        raise UsageError(f"--valid-fraction {valid_fraction} must be in [0, 1)")
    cls = _model_class(model)
    params = _parse_params(param, cls)
    torchrun = distributed.active() or (distributed.launched_by_torchrun()
                                        and int(os.environ["WORLD_SIZE"]) > 1)
    if nproc < 1:
        raise UsageError(f"--nproc {nproc} must be at least 1")
    streams = model == "net" or (model == "gbm" and params.get("backend") == "xgboost")
    if stream or nproc > 1 or torchrun or (_is_parquet(data) and streams and conformal is None):
        if not streams or conformal is not None:
            raise UsageError("--stream trains the net family, and the gbm family with --param "
                             "backend=xgboost (without --conformal); the forest, linear and other "
                             "gbm backends read the file into memory: drop --stream/--nproc")
        if model != "net" and (nproc > 1 or torchrun):
            raise UsageError("--nproc and torchrun train the net family only; boosting streams "
                             "on one process")
        _fit_stream(data, output, target, given, otherwise, target_prefix, features, drop, cls,
                    params, valid_fraction, seed, force, nproc, json_out)
        return
    frame = _read(data, sep=sep, encoding=encoding)
    tasks = _targets(frame, target, target_prefix, data, given, otherwise)
    target_cols = list(dict.fromkeys(c for t in tasks for c in t.source_columns))
    chosen = _choose_features(frame, tasks, features, drop, data)
    X, y = frame[chosen], frame[target_cols]
    check_flat_values(X, str(data))
    check_flat_values(y, str(data))
    resolved = resolve_tasks(tasks, y)
    console = _console()
    if not json_out:
        _print_table(describe_tasks(fit_tasks(resolved, y)),
                     f"Tasks ({len(frame)} rows, {len(chosen)} features)")
    estimator = cls(tasks=resolved, **{"random_state": seed, **params})
    if joint and conformal is None:
        raise UsageError("--joint needs --conformal ALPHA")
    if conformal is not None:
        if not 0 < conformal < 1:
            raise UsageError(f"--conformal {conformal} must lie strictly between 0 and 1")
        from .models.conformal import Conformal

        estimator = Conformal(estimator, tasks=resolved, alpha=conformal, joint=joint,
                              random_state=seed)
    if "validation_fraction" in estimator.get_params() and hasattr(estimator, "on_epoch_end"):
        estimator.set_params(validation_fraction=valid_fraction)
    own_split = "validation_fraction" in estimator.get_params() and hasattr(estimator, "on_epoch_end")
    train = valid = None
    if not own_split and valid_fraction > 0 and len(X) >= 10:
        # Families without their own split are fitted on the training part only, so the
        # validation metrics are honest, as the net's are (it never trains on its split).
        import numpy as np

        perm = np.random.default_rng(seed).permutation(len(X))
        n_valid = int(len(X) * valid_fraction)
        valid, train = np.sort(perm[:n_valid]), np.sort(perm[n_valid:])
    start = time.perf_counter()
    if train is not None:
        estimator.fit(X.iloc[train], y.iloc[train])
    else:
        _fit_with_progress(estimator, X, y, show=not json_out)
    seconds = time.perf_counter() - start
    rows = getattr(estimator, "validation_indices_", None) if own_split else valid
    if rows is not None and len(rows):
        label, table = f"validation split ({len(rows)} rows)", estimator.evaluate(X.iloc[rows], y.iloc[rows])
    else:
        label, table = f"training rows ({len(X)}; no validation split)", estimator.evaluate(X, y)
    estimator.save(output, overwrite=force)
    if json_out:
        _print_json({"model_dir": str(output), "fit_seconds": seconds,
                     "epochs": getattr(estimator, "n_iter_", None), "evaluated_on": label,
                     "tasks": [t.to_dict() for t in resolved], "metrics": _metrics_json(table)})
        return
    _print_table(table, f"Metrics on the {label}")
    console.print(f"saved to {output} ({seconds:.1f} s)", markup=False)


def _is_parquet(data: str) -> bool:
    from pathlib import Path

    path = Path(data)
    from .io.paths import is_glob

    return path.is_dir() or is_glob(data) or path.name.lower().endswith((".parquet", ".pq"))


def _fit_stream(data: str, output: str, target: list[str], given: list[str], otherwise: list[str],
                prefix: str | None, features: list[str], drop: list[str], cls: Any,
                params: dict[str, Any], valid_fraction: float, seed: int, force: bool, nproc: int,
                json_out: bool) -> None:
    """``fit`` from a Parquet source, on this process, on ``nproc`` or under torchrun."""
    import time

    from . import distributed
    from .io.parquet import ParquetSource
    from .tasks import describe_tasks

    if not _is_parquet(data):
        raise UsageError(f"{data}: streaming reads Parquet (a .parquet file, a directory of them "
                         "or a glob); convert the file, or drop --stream/--nproc")
    source = ParquetSource(data)
    head = next(source.batches(source.pieces[0], source.columns))
    tasks = _targets(head, target, prefix, data, given, otherwise)
    target_cols = list(dict.fromkeys(c for t in tasks for c in t.source_columns))
    chosen = _choose_features(head, tasks, features, drop, data)
    estimator = cls(tasks=tasks, **{"random_state": seed, **params})
    if valid_fraction > 0 or "early_stopping" not in estimator.get_params():
        estimator.set_params(validation_fraction=valid_fraction)
    else:  # boosting: no held-out rows means no early stopping
        estimator.set_params(early_stopping=False)
    start = time.perf_counter()
    args = (estimator, data, target_cols, chosen, output, force)
    if nproc > 1:
        distributed.launch(nproc, _stream_worker, *args)
        from .persistence import load

        fitted = load(output)
    else:
        with distributed.process_group(str(getattr(estimator, "device", "cpu"))):
            fitted = _stream_worker(*args)
            if distributed.rank() != 0:
                return
    seconds = time.perf_counter() - start
    if not hasattr(fitted, "history_"):  # boosting: the tasks, then where it went
        if json_out:
            _print_json({"model_dir": str(output), "fit_seconds": seconds, "rows": int(source.num_rows),
                         "world_size": 1, "streamed": True,
                         "tasks": [t.task.to_dict() for t in fitted.task_states_]})
            return
        _print_table(describe_tasks(fitted.task_states_),
                     f"Tasks ({source.num_rows} rows streamed, {len(chosen)} features)")
        _console().print(f"saved to {output} ({seconds:.1f} s)", markup=False)
        return
    best = next((r for r in fitted.history_ if r["epoch"] == fitted.best_epoch_), fitted.history_[-1])
    losses = best["valid"] or best["train"]
    label = "validation" if best["valid"] else "training"
    if json_out:
        _print_json({"model_dir": str(output), "fit_seconds": seconds, "epochs": fitted.n_iter_,
                     "rows": int(source.num_rows), "world_size": fitted.world_size_, "streamed": True,
                     "tasks": [t.task.to_dict() for t in fitted.task_states_],
                     "best_epoch": fitted.best_epoch_, f"{label}_losses": losses})
        return
    import pandas as pd

    _print_table(describe_tasks(fitted.task_states_),
                 f"Tasks ({source.num_rows} rows streamed, {len(chosen)} features, "
                 f"{fitted.world_size_} process{'es' if fitted.world_size_ > 1 else ''})")
    _print_table(pd.DataFrame({"loss": losses}).rename_axis("task"),
                 f"{label.capitalize()} losses (epoch {fitted.best_epoch_} of {fitted.n_iter_})",
                 floatfmt="{:.4f}")
    _console().print(f"saved to {output} ({seconds:.1f} s)", markup=False)


def _stream_worker(estimator: Any, data: str, targets: list[str], features: list[str],
                   output: str, force: bool) -> Any:
    """One process of a streaming fit: fit, and on rank 0, save (atomically)."""
    from . import distributed
    from .io.parquet import ParquetSource

    estimator.fit(ParquetSource(data, targets=targets, features=features))
    if distributed.rank() == 0:
        estimator.save(output, overwrite=force)
    distributed.barrier()  # no rank reports success before the model is in place
    return estimator


def _fit_with_progress(estimator: Any, X: Any, y: Any, *, show: bool) -> None:
    if not show or not hasattr(estimator, "on_epoch_end"):
        estimator.fit(X, y)
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("training"), BarColumn(), TextColumn("epoch {task.completed}"),
               TextColumn("{task.fields[losses]}"), TimeElapsedColumn())
    with Progress(*columns, console=_console(stderr=True), transient=True) as progress:
        bar = progress.add_task("fit", total=estimator.max_epochs, losses="")

        def on_epoch_end(record: dict[str, Any], improved: bool) -> None:
            losses = record["valid"] or record["train"]
            text = "  ".join(f"{k} {v:.4f}" for k, v in losses.items())
            progress.update(bar, completed=record["epoch"], losses=f"valid: {text}")

        estimator.on_epoch_end = on_epoch_end
        try:
            estimator.fit(X, y)
        finally:
            del estimator.on_epoch_end


@app.command()
def predict(
    model_dir: str = typer.Argument(..., help="A model directory written by `polyhead fit`"),
    data: str = typer.Argument(..., help="Rows to predict: .csv (.gz/.zst), .parquet or .jsonl"),
    output: str = typer.Option(..., "--output", "-o", help="Predictions: .csv or .parquet (a folder, with several inputs)"),
    proba: bool = typer.Option(False, "--proba", help="Add task:class probability columns"),
    intervals: bool = typer.Option(False, "--intervals", help=(
        "Add each task's conformal region: task:lower/task:upper, or task:set=class columns "
        "(a model fitted with --conformal)")),
    id_column: str | None = typer.Option(None, "--id", help="Column copied to the output first"),
    batch_size: int = typer.Option(100_000, "--batch-size", help="Rows per batch (bounds memory)"),
    force: bool = typer.Option(False, "--force", help="Replace an existing output file"),
    sep: str | None = typer.Option(None, "--sep", help="CSV delimiter (sniffed by default)"),
    encoding: str | None = typer.Option(None, "--encoding", help="Text encoding of a CSV input (default UTF-8), e.g. latin-1"),
    nproc: int = typer.Option(1, "--nproc", help=(
        "With a directory or glob of inputs: predict N files at once, in N processes (one "
        "output per input in the folder -o)")),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary"),
) -> None:
    """Predict every row of a file (or of each file in a directory or glob), streaming it in
    batches, in the file's row order."""
    import time

    from .io import check_output
    from .io.tables import OUTPUT_SUFFIXES
    from .persistence import load

    if batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    if nproc < 1:
        raise UsageError(f"--nproc {nproc} must be at least 1")
    files = _input_files(data)
    if files is None:
        if nproc > 1:
            raise UsageError(f"--nproc predicts several files at once; {data} is one file (give "
                             "a directory or a glob)")
        check_output(output, force=force, inputs=[data, model_dir], suffixes=OUTPUT_SUFFIXES)
        jobs = [(data, output)]
    else:
        jobs = _output_files(files, output, force, model_dir)
    options: dict[str, Any] = {"proba": proba, "intervals": intervals, "id_column": id_column,
               "batch_size": batch_size, "sep": sep, "encoding": encoding}
    model = load(model_dir)
    _check_predict_options(model, model_dir, intervals, id_column)
    start = time.perf_counter()
    if nproc > 1:
        import multiprocessing

        from .parallel import resolve_n_jobs

        workers = min(resolve_n_jobs(nproc), len(jobs))
        with multiprocessing.get_context("spawn").Pool(workers, initializer=_predict_worker_init,
                                                       initargs=(model_dir,)) as pool:
            counts = pool.starmap(_predict_worker, [(src, out, options) for src, out in jobs])
    else:
        counts = [_predict_file(model, src, out, **options) for src, out in jobs]
    seconds = time.perf_counter() - start
    rows = sum(counts)
    where = output if len(jobs) == 1 else f"{len(jobs)} files in {output}"
    if json_out:
        _print_json({"output": str(output), "files": [str(o) for _, o in jobs], "rows": rows,
                     "seconds": seconds})
    else:
        _console().print(f"wrote {rows:,} rows to {where} ({seconds:.1f} s)", markup=False)


def _check_predict_options(model: Any, model_dir: str, intervals: bool, id_column: str | None) -> None:
    if intervals and not hasattr(model, "interval_frame"):
        raise UsageError(f"--intervals needs a model fitted with --conformal; {model_dir} holds "
                         f"a {type(model).__name__}")
    if id_column is not None:
        outputs = [c for t in model.task_states_ for c in t.output_columns]
        if id_column in outputs:
            raise UsageError(f"--id {id_column!r} is also a prediction column of the model (its "
                             "tasks write " + ", ".join(map(repr, outputs[:5])) + "); copy "
                             "another column, or rename it")


def _input_files(data: str) -> list[str] | None:
    """The files a directory or a glob names (None: ``data`` is one file)."""
    import glob
    from pathlib import Path

    from .io.paths import is_glob
    from .io.tables import CSV_EXTS, JSONL_EXTS, PARQUET_EXTS

    known = (*CSV_EXTS, *PARQUET_EXTS, *JSONL_EXTS)
    if Path(data).is_dir():
        files = sorted(str(f) for f in Path(data).iterdir() if f.is_file()
                       and not f.name.startswith((".", "_"))
                       and f.name.lower().split(".gz")[0].split(".zst")[0].endswith(known))
    elif is_glob(data):
        files = sorted(glob.glob(data))
    else:
        return None
    if not files:
        raise UsageError(f"{data}: no table files (.csv, .parquet, .jsonl) to predict")
    return files


def _output_files(files: list[str], output: str, force: bool, model_dir: str) -> list[tuple[str, str]]:
    """One output per input, in the folder ``output`` (made if absent), each checked."""
    from pathlib import Path

    from .io import check_output

    folder = Path(output)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{output}: with several inputs the output is a folder, and this is a file")
    if not folder.exists():
        if not folder.parent.is_dir():
            raise UsageError(f"cannot write {output}: folder {folder.parent} does not exist")
        folder.mkdir()
    jobs = []
    for src in files:
        name = Path(src).name
        stem, suffix = (name[: -len(".parquet")], ".parquet") if name.lower().endswith(".parquet") \
            else (name.split(".")[0], ".csv" if ".csv" in name.lower() else ".parquet")
        out = str(folder / f"{stem}{suffix}")
        check_output(out, force=force, inputs=[*files, model_dir])
        jobs.append((src, out))
    if len({o for _, o in jobs}) < len(jobs):
        raise UsageError(f"two inputs in {len(files)} files would write the same output name; "
                         "predict them separately")
    return jobs


_WORKER_MODEL: Any = None


def _predict_worker_init(model_dir: str) -> None:
    """A process of ``predict --nproc``: one thread (the others are its siblings')."""
    global _WORKER_MODEL
    from .parallel import single_threaded
    from .persistence import load

    single_threaded().__enter__()  # for the life of this worker process
    _WORKER_MODEL = load(model_dir)


def _predict_worker(data: str, output: str, options: dict[str, Any]) -> int:
    return _predict_file(_WORKER_MODEL, data, output, **options)


def _predict_file(model: Any, data: str, output: str, *, proba: bool, intervals: bool,
                  id_column: str | None, batch_size: int, sep: str | None,
                  encoding: str | None) -> int:
    """Predict one file into one output, batch by batch; returns the rows written."""
    from .frames import check_unique_columns
    from .io import TableWriter, iter_batches

    with TableWriter(output) as writer:
        for batch in iter_batches(data, batch_size=batch_size, sep=sep,
                                  column_types=_column_types(model), encoding=encoding):
            check_unique_columns(batch, str(data))
            if id_column is not None and id_column not in batch.columns:
                raise UsageError(f"--id column {id_column!r} is not in {data}")
            out = model.predict_frame(batch, proba=proba)
            if intervals:
                out = out.join(model.interval_frame(batch))
            if id_column is not None:
                out.insert(0, id_column, batch[id_column].to_numpy())
            writer.write(out)
    return int(writer.rows)


def _column_types(model: Any) -> dict[str, Any]:
    """Arrow types for a model's feature columns, so every CSV block parses the same way."""
    import pyarrow as pa

    types: dict[str, Any] = {}
    for col in model.feature_encoder().columns_:
        if col["type"] == "numeric":
            types[col["name"]] = pa.float64()
        elif all(isinstance(c, str) for c in col["categories"]):
            types[col["name"]] = pa.string()
    return types


@app.command()
def evaluate(
    model_dir: str = typer.Argument(..., help="A model directory written by `polyhead fit`"),
    data: str = typer.Argument(..., help="Rows with features and target columns"),
    sep: str | None = typer.Option(None, "--sep", help="CSV delimiter (sniffed by default)"),
    encoding: str | None = typer.Option(None, "--encoding", help="Text encoding of a CSV input (default UTF-8), e.g. latin-1"),
    json_out: bool = typer.Option(False, "--json", help="Print metrics as JSON"),
) -> None:
    """Per-task metrics of a saved model on a labelled file."""
    from .persistence import load

    model = load(model_dir)
    frame = _read(data, sep=sep, encoding=encoding, column_types=_column_types(model))
    needed = list(dict.fromkeys(c for t in model.task_states_ for c in t.task.source_columns))
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise UsageError(f"target column {missing[0]!r} is not in {data}")
    table = model.evaluate(frame, frame[needed])
    if json_out:
        _print_json({"rows": len(frame), "metrics": _metrics_json(table)})
    else:
        _print_table(table, f"Metrics on {data} ({len(frame)} rows)")


@app.command()
def info(
    model_dir: str = typer.Argument(..., help="A model directory written by `polyhead fit`"),
    json_out: bool = typer.Option(False, "--json", help="Print as JSON"),
) -> None:
    """Tasks, classes, features, architecture, training summary and versions of a model."""
    from .persistence import read_manifest

    manifest = read_manifest(model_dir)
    features = manifest.get("features") or {}
    if not features and manifest.get("estimators"):  # a composite: its first sub-model's
        features = manifest["estimators"][0].get("features") or {}
    history = manifest.get("history") or []
    training = dict(manifest.get("training") or {})
    if history:
        best = history[max(0, int(training.get("best_epoch") or len(history)) - 1)]
        training.update(best_valid_loss=best.get("valid_loss"), best_valid=best.get("valid"),
                        final_train=history[-1].get("train"))
    summary: dict[str, Any] = {
        "model_dir": str(model_dir), "estimator": manifest.get("estimator"),
        "format_version": manifest.get("format_version"),
        "polyhead_version": manifest.get("polyhead_version"),
        "tasks": [{**{k: v for k, v in s.metadata().items() if k != "output_columns"},
                   "weight": s.task.weight, "loss": s.task.loss,
                   **({"given": s.task.given, "otherwise": s.task.otherwise}
                      if s.task.given is not None else {})}
                  for s in _manifest_tasks(manifest)],
        "features": [dict(c) for c in features.get("columns", [])],
        "architecture": {k: v for k, v in (manifest.get("architecture") or {}).items()
                         if k not in ("summary", "input_names")},
        "params": manifest.get("params"), "training": training,
        "twins": manifest.get("twins"), "shrinkage": manifest.get("shrinkage"),
    }
    if json_out:
        _print_json(summary)
        return
    import pandas as pd

    console = _console()
    console.print(f"[bold]{manifest.get('estimator')}[/] in {model_dir} - polyhead "
                  f"{summary['polyhead_version']}, model format {summary['format_version']}")
    tasks = pd.DataFrame([{**t, "columns": ", ".join(map(str, t["columns"])),
                           "classes": "" if t["classes"] is None else _short_list(t["classes"])}
                          for t in summary["tasks"]]).set_index("name")
    _print_table(tasks, "Tasks")
    feats = pd.DataFrame([{"feature": c["name"], "type": c["type"],
                           "detail": _feature_detail(c)}
                          for c in summary["features"]]).set_index("feature")
    _print_table(feats, "Features")
    arch = manifest.get("architecture") or {}
    if arch:
        console.print(f"[bold]Architecture[/]: {arch.get('in_features')} inputs -> trunk "
                      f"{tuple(arch.get('hidden', ()))} ({arch.get('activation')}, dropout "
                      f"{arch.get('dropout')}, norm {arch.get('norm')}) -> heads "
                      f"{arch.get('heads')}; {arch.get('n_parameters', 0):,} parameters")
    if history:
        console.print(f"[bold]Training[/]: {training.get('n_iter')} epochs, best epoch "
                      f"{training.get('best_epoch')}, best validation loss "
                      f"{training.get('best_valid_loss')}"
                      + (f", streamed on {training.get('world_size', 1)} process(es)"
                         if training.get("streamed") else ""), markup=True)
    twins = manifest.get("twins") or {}
    if twins.get("alphas"):
        recall = ", ".join(f"{task} (alpha {alpha})" for task, alpha in twins["alphas"].items())
        console.print(f"[bold]Twins[/]: rows equal to one of {twins.get('rows')} training rows "
                      f"recall its labels for {recall}", markup=True)
    shrunk = manifest.get("shrinkage") or {}
    if isinstance(shrunk, dict) and shrunk:
        factors = ", ".join(f"{key} (factor {value[0]:.2f})" for key, value in shrunk.items())
        console.print(f"[bold]Shrinkage[/]: toward the training mean for {factors}", markup=True)


def _manifest_tasks(manifest: dict[str, Any]) -> list[Any]:
    """The fitted tasks a manifest describes, checked (a ModelFileError if malformed)."""
    from .exceptions import ModelFileError, TaskError
    from .tasks import task_from_dict

    entries = manifest.get("tasks")
    if not isinstance(entries, list):
        raise ModelFileError("the manifest has no list of tasks")
    try:
        return [task_from_dict(t) for t in entries]
    except TaskError as exc:
        raise ModelFileError(f"the manifest's tasks are malformed: {exc}") from None


def _feature_detail(col: dict[str, Any]) -> str:
    if col["type"] == "numeric":
        text = (f"{col.get('transform', 'standard')}: centre {col['center']:.4g}, scale "
                f"{col['scale']:.4g}")
        return text + (", missing indicator" if col.get("indicator") else "")
    text = _short_list(col["categories"])
    if col.get("other"):
        text += f" (+ {'<other>'} for the rest)"
    if col.get("encoding") == "code":
        text = "embedding codes: " + text
    return text


def _short_list(values: list[Any], n: int = 8) -> str:
    text = ", ".join(map(str, values[:n]))
    return text + (f", ... ({len(values)})" if len(values) > n else "")


#: compare's arms by CLI name (evaluation.comparison.catalogue); the first six run by default
COMPARE_MODELS = ("separate-nets", "joint-net", "joint-net-uncertainty", "forest", "gbm", "linear",
                  "joint-net-fast", "joint-net-balanced", "joint-net-best", "joint-net-famo",
                  "joint-net-mmoe")
COMPARE_DEFAULT = COMPARE_MODELS[:6]


@app.command()
def compare(
    data: str = typer.Argument(..., help="Data: .csv (.gz/.zst), .parquet or .jsonl"),
    output: str = typer.Option(..., "--output", "-o", help="HTML report to write"),
    target: list[str] = typer.Option([], "--target", "-t", help="A task: name[:kind][=column(s)]. Repeatable."),
    given: list[str] = typer.Option([], "--given", help="A condition TASK:CONDITION (see fit)"),
    otherwise: list[str] = typer.Option([], "--otherwise", help="TASK=VALUE where the condition is false"),
    target_prefix: str | None = typer.Option(None, "--target-prefix", help="Every column starting with this is a target"),
    models: str = typer.Option(",".join(COMPARE_DEFAULT), "--models", help=f"Comma list from: {', '.join(COMPARE_MODELS)}"),
    drop: list[str] = typer.Option([], "--drop", help="Columns to leave out (comma list)"),
    cv: int = typer.Option(5, "--cv", help="Folds"),
    repeats: int = typer.Option(2, "--repeats", help="Repetitions of the cross-validation"),
    seed: int = typer.Option(0, "--seed", help="Seeds the folds and the models"),
    jobs: int = typer.Option(-1, "--jobs", "-j", help="Fits run at once in separate processes (-1: one per CPU)"),
    force: bool = typer.Option(False, "--force", help="Replace an existing report"),
    sep: str | None = typer.Option(None, "--sep", help="CSV delimiter (sniffed by default)"),
    encoding: str | None = typer.Option(None, "--encoding", help="Text encoding of a CSV input (default UTF-8), e.g. latin-1"),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON"),
) -> None:
    """Separate models vs one joint model (and other families), paired over the same folds."""
    import json

    from .evaluation.comparison import catalogue
    from .evaluation.comparison import compare as run_compare
    from .io import check_output

    # everything that could fail after the folds is checked before the first fit
    check_output(output, force=force, inputs=[data], suffixes=(".html", ".htm"))
    _require_matplotlib("the comparison report")
    names = [m.strip() for m in models.split(",") if m.strip()]
    unknown = [m for m in names if m not in COMPARE_MODELS]
    if unknown or not names:
        raise UsageError(f"unknown model {unknown[0] if unknown else ''!r} in --models; "
                         f"choose from {', '.join(COMPARE_MODELS)}")
    if cv < 2 or repeats < 1:
        raise UsageError("--cv must be at least 2 and --repeats at least 1")
    frame = _read(data, sep=sep, encoding=encoding)
    tasks = _targets(frame, target, target_prefix, data, given, otherwise)
    target_cols = list(dict.fromkeys(c for t in tasks for c in t.source_columns))
    X = frame[_choose_features(frame, tasks, [], drop, data)]
    if cv > len(frame):
        raise UsageError(f"--cv {cv} needs at least {cv} rows; {data} has {len(frame)}")
    arms = catalogue(seed)
    by_cli_name = {name.replace(" (", "-").replace(")", "").replace(" ", "-"): name for name in arms}
    chosen = {by_cli_name[name]: arms[by_cli_name[name]] for name in names}
    progress_fn, finish = _compare_progress(len(chosen) * cv * repeats, show=not json_out)
    try:
        result = run_compare(X, frame[target_cols], tasks=tasks, models=chosen, cv=cv,
                             repeats=repeats, random_state=seed, n_jobs=jobs, progress=progress_fn)
    finally:
        finish()
    result.to_html(output, overwrite=force)
    if json_out:
        summary = result.summary()
        _print_json({"report": str(output), "baseline": result.baseline,
                     "summary": json.loads(summary.to_json(orient="records"))})
        return
    table = result._display_table("main").set_index("task")
    _print_table(table, f"{cv}-fold x {repeats} cross-validation, {len(frame):,} rows")
    _console().print(f"report written to {output}", markup=False)


def _compare_progress(total: int, *, show: bool) -> tuple[Any, Any]:
    """A progress bar over the (model, fold) fits with the time left, as fits complete."""
    if not show:
        return None, lambda: None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
                        console=_console(stderr=True), transient=True)
    progress.start()
    bar = progress.add_task("comparing", total=total)

    def update(model: str, repeat: int, fold: int, seconds: float, done: int, total_: int) -> None:
        progress.update(bar, completed=done,
                        description=f"{model} (repeat {repeat + 1}, fold {fold + 1}) {seconds:.1f} s")

    return update, progress.stop


@app.command("plot-model")
def plot_model(
    model_dir: str = typer.Argument(..., help="A model directory written by `polyhead fit`"),
    output: str = typer.Option(..., "--output", "-o", help="SVG (or PNG) file to write"),
    force: bool = typer.Option(False, "--force", help="Replace an existing file"),
) -> None:
    """Draw a network model's architecture (inputs, trunk, heads) without loading torch."""
    from .io import atomic_file, check_output
    from .persistence import read_manifest

    target = check_output(output, force=force, inputs=[model_dir], suffixes=(".svg", ".png"))
    _require_matplotlib("plot-model")
    from .evaluation.plots import architecture

    manifest = read_manifest(model_dir)
    arch = manifest.get("architecture")
    if not arch:
        raise UsageError(f"{model_dir} holds a {manifest.get('estimator')}, which has no network "
                         "architecture to draw")
    kinds = {t["task"]["name"]: t["task"]["kind"] for t in manifest.get("tasks", [])}
    fig = architecture(arch, kinds, str(manifest.get("estimator")))
    with atomic_file(target) as tmp:
        fig.savefig(tmp, bbox_inches="tight")
    _console().print(f"wrote {target}", markup=False)


@app.command()
def export(
    model_dir: str = typer.Argument(..., help="A model directory written by `polyhead fit`"),
    output: str = typer.Option(..., "--output", "-o", help="File to write: model.onnx"),
    fmt: str = typer.Option("onnx", "--format", help="Export format: onnx"),
    force: bool = typer.Option(False, "--force", help="Replace an existing file"),
) -> None:
    """Export a model (net, forest or linear) as one ONNX graph, encoder and decoding included."""
    from .io import check_output
    from .persistence import load

    if fmt != "onnx":
        raise UsageError(f"unknown --format {fmt!r}; choose onnx")
    check_output(output, force=force, inputs=[model_dir], suffixes=(".onnx",))
    from .io.onnx import _require, check_exportable, to_onnx

    _require()
    model = load(model_dir)
    check_exportable(model)
    target = to_onnx(model, output, overwrite=force)
    _console().print(f"wrote {target}", markup=False)


@app.command()
def upgrade(
    model_dir: str = typer.Argument(..., help="A model directory written by an older polyhead"),
    output: str = typer.Option(..., "--output", "-o", help="Model directory to write"),
    force: bool = typer.Option(False, "--force", help="Replace an existing model directory"),
) -> None:
    """Re-save an old model in today's format (its scikit-learn parts as arrays, not skops)."""
    from .io import check_output
    from .io.legacy import upgrade as upgrade_model

    check_output(output, kind="model", force=force, inputs=[model_dir])
    target = upgrade_model(model_dir, output, overwrite=force)
    _console().print(f"wrote {target}", markup=False)


@app.command()
def serve(
    model_dir: str = typer.Argument(..., help="A model directory written by `polyhead fit`, or a .onnx export"),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on"),
    port: int = typer.Option(8000, "--port", help="Port to listen on"),
    workers: int = typer.Option(1, "--workers", help="Worker processes"),
    max_rows: int = typer.Option(10_000, "--max-rows", help="Largest batch (413 above)"),
    max_body_mb: float = typer.Option(16.0, "--max-body-mb", help="Largest request body in MiB (413 above)"),
    allow_extra: bool = typer.Option(False, "--allow-extra", help="Ignore unknown fields instead of a 422"),
    runtime: str = typer.Option("auto", "--runtime", help=(
        "torch (a model directory) or onnx (a .onnx file from `polyhead export`, served by "
        "onnxruntime without torch); auto: from the path")),
) -> None:
    """Serve a model over HTTP: /predict, /metadata, /health, /ready, /docs (FastAPI + uvicorn)."""
    from .serving.app import ServeSettings, is_onnx, run

    if runtime not in ("auto", "torch", "onnx"):
        raise UsageError(f"unknown --runtime {runtime!r}; choose auto, torch or onnx")
    if runtime == "onnx" and not is_onnx(model_dir):
        raise UsageError(f"--runtime onnx serves a .onnx file; export {model_dir} first: "
                         f"polyhead export {model_dir} -o model.onnx")
    if runtime == "torch" and is_onnx(model_dir):
        raise UsageError(f"{model_dir} is an ONNX file: serve it with --runtime onnx")

    if workers < 1 or max_rows < 1 or max_body_mb <= 0:
        raise UsageError("--workers and --max-rows must be at least 1, --max-body-mb positive")
    run(model_dir, host=host, port=port, workers=workers,
        settings=ServeSettings(max_rows=max_rows, max_body_bytes=int(max_body_mb * 2**20),
                               allow_extra=allow_extra))


@app.command()
def dataset(
    name: str = typer.Argument(..., help="A dataset that ships with polyhead: abalone"),
    output: str = typer.Option(..., "--output", "-o", help="File to write: .csv or .parquet"),
    force: bool = typer.Option(False, "--force", help="Replace an existing file"),
) -> None:
    """Write a dataset that ships with polyhead to a file, to try the commands on."""
    from .datasets import DATASETS
    from .io import check_output, write_table
    from .io.tables import OUTPUT_SUFFIXES

    if name not in DATASETS:
        raise UsageError(f"unknown dataset {name!r}; available: {', '.join(DATASETS)}")
    check_output(output, force=force, suffixes=OUTPUT_SUFFIXES)
    frame = DATASETS[name]()
    write_table(frame.astype({c: str for c in frame.select_dtypes("category").columns}), output)
    _console().print(f"wrote {len(frame):,} rows x {frame.shape[1]} columns to {output}", markup=False)


@app.command()
def demo(
    seed: int = typer.Option(0, "--seed", help="random_state of the three models"),
    json_out: bool = typer.Option(False, "--json", help="print the results as JSON"),
) -> None:
    """The abalone experiment: separate regression and classification nets vs one joint net."""
    from .demo import run_demo

    console = _console()
    if not json_out:
        console.print("[bold]Abalone[/]: rings as a number (regression) and as a class "
                      "(multiclass); test_size=0.33, random_state=1; default MultiTaskNet settings")
    results, joint = run_demo(random_state=seed)
    if json_out:
        _print_json({"results": results.reset_index().to_dict(orient="records"),
                     "architecture": str(joint.module_)})
        return
    _print_table(results, "Separate models vs one joint model (test split)")
    console.print("[bold]Joint model architecture[/]")
    console.print(str(joint.module_), markup=False)
    n_params = sum(p.numel() for p in joint.module_.parameters())
    console.print(f"{n_params:,} parameters; input width {joint.features_.n_outputs_} "
                  f"({', '.join(joint.features_.feature_names_out_)})", markup=False)


def main(argv: list[str] | None = None) -> None:
    """Entry point: exit 0 on success, 2 on bad usage or input, 1 on an internal error."""
    raw = list(argv if argv is not None else sys.argv[1:])
    debug = "--debug" in raw
    args = [a for a in raw if a != "--debug"]
    try:
        app(args=args, standalone_mode=True)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        if debug:
            raise
        # imported here: the exception module pulls in scikit-learn, which --help must not
        from .exceptions import PolyheadError

        if isinstance(exc, (UsageError, PolyheadError, FileNotFoundError, FileExistsError)) or (
                isinstance(exc, ImportError) and "pip install" in str(exc)):
            _error_line(f"error: {exc}")  # a missing optional package is the user's to install
            sys.exit(2)
        _error_line(f"internal error: {type(exc).__name__}: {exc} "
                    "(run again with --debug for the traceback)")
        sys.exit(1)


def _error_line(text: str) -> None:
    """One line on stderr, never wrapped, so scripts can grep it."""
    print(" ".join(text.split()), file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    main()
