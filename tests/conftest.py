"""Shared fixtures: small synthetic tables of mixed kinds, fast network settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# preset="fast": one network (the default preset trains eight; tests of it say so)
FAST = {"hidden": (16,), "max_epochs": 15, "batch_size": 64, "random_state": 0, "preset": "fast"}


@pytest.fixture
def fast() -> dict:
    return dict(FAST)


def make_mixed(n: int = 300, seed: int = 0, missing: float = 0.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Features (numeric + categorical) and four targets: regression, binary (strings),
    multiclass (ints), and a 3-label multilabel group; ``missing`` blanks that share of labels."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    b = rng.normal(size=n)
    colour = rng.choice(["red", "green", "blue"], size=n)
    X = pd.DataFrame({"a": a, "b": b, "colour": colour})
    shift = pd.Series(colour).map({"red": 1.0, "green": 0.0, "blue": -1.0}).to_numpy()
    y = pd.DataFrame({
        "amount": 10 + 3 * a + 2 * shift + rng.normal(scale=0.3, size=n),
        "kind": np.where(a + b > 0, "yes", "no"),
        "level": np.digitize(a, [-0.5, 0.5]),
        "t1": (b > 0).astype(int),
        "t2": (a > 0.3).astype(int),
        "t3": (shift > 0).astype(int),
    })
    if missing:
        for col in y.columns:
            blank = rng.random(n) < missing
            y[col] = y[col].astype(object).where(~blank, None)
            if col in ("amount",):
                y[col] = y[col].astype(float)
    return X, y


@pytest.fixture
def mixed() -> tuple[pd.DataFrame, pd.DataFrame]:
    return make_mixed()


MIXED_TASKS = {"amount": "regression", "kind": "binary", "level": "multiclass"}


def shared_data(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is not available")
    return path


def cli(capsys, *args):
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    from polyhead.cli import main

    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err
