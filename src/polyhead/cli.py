"""The ``polyhead`` command line.

Only typer and rich are imported at start-up: torch and the models load inside the commands
that need them, so ``polyhead --help`` is instant.
"""

from __future__ import annotations

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

    return Console(stderr=stderr, highlight=False)


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


@app.command()
def demo(
    seed: int = typer.Option(0, "--seed", help="random_state of the three models"),
    json_out: bool = typer.Option(False, "--json", help="print the results as JSON"),
) -> None:
    """The abalone experiment: separate regression and classification nets vs one joint net."""
    import json

    from .demo import run_demo

    console = _console()
    if not json_out:
        console.print("[bold]Abalone[/]: rings as a number (regression) and as a class "
                      "(multiclass); test_size=0.33, random_state=1; default MultiTaskNet settings")
    results, joint = run_demo(random_state=seed)
    if json_out:
        print(json.dumps({"results": results.reset_index().to_dict(orient="records"),
                          "architecture": str(joint.module_)}, default=float))
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

        if isinstance(exc, (UsageError, PolyheadError, FileNotFoundError, FileExistsError)):
            _console(stderr=True).print(f"error: {exc}", markup=False)
            sys.exit(2)
        _console(stderr=True).print(f"internal error: {type(exc).__name__}: {exc} "
                                    "(run again with --debug for the traceback)", markup=False)
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
