"""Is one model's loss to another on a set within the noise of its test rows?

Fits two models of ``quality.py`` (same specs, same splits) on one split of a set and resamples
the test rows with replacement: each resample scores both models on the same rows (the set's
error as ``quality.py`` defines it), so the spread of the difference is the test sample's noise,
which the seeds of a fixed split (adult: one standard split) do not show.

    python benchmarks/paired_bootstrap.py --set adult --models 'gbm;lightgbm' [--split 0] [--resamples 200]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    import warnings

    import datasets
    import quality

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", required=True)
    parser.add_argument("--models", required=True, help="two specs, 'a;b'")
    parser.add_argument("--split", type=int, default=0)
    parser.add_argument("--resamples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    specs = args.models.split(";")
    if len(specs) != 2:
        parser.error("--models takes two specs separated by ';'")
    warnings.simplefilter("ignore")
    data = datasets.LOADERS[args.set]()
    train, test = data.splits[args.split]
    outputs = []
    for spec in specs:
        model = quality.make_model(spec, args.split)
        out, seconds = quality.fit_outputs(model, data, train, test)
        outputs.append({k: np.asarray(v) for k, v in out.items()})
        print(f"{spec}: error {_error(quality, data, train, test, out):.5f} ({seconds:.1f} s)")

    def difference(rows: np.ndarray) -> float:
        a, b = ({k: v[rows] for k, v in out.items()} for out in outputs)
        return _error(quality, data, train, test[rows], a) - _error(quality, data, train, test[rows], b)

    observed = difference(np.arange(len(test)))
    rng = np.random.default_rng(args.seed)
    diffs = np.array([difference(rng.integers(0, len(test), len(test)))
                      for _ in range(args.resamples)])
    low, high = np.percentile(diffs, [2.5, 97.5])
    print(f"{specs[0]} - {specs[1]} on {args.set} split {args.split}: {observed:+.5f}, "
          f"95% of {args.resamples} resamples of the {len(test)} test rows in "
          f"[{low:+.5f}, {high:+.5f}]; {specs[0]} no worse in {np.mean(diffs <= 0):.0%} of them")


def _error(quality: Any, data: Any, train: np.ndarray, test: np.ndarray, outputs: dict) -> float:
    errors = quality.task_errors(data, train, test, outputs)
    return float(np.nanmean(list(errors.values())))


if __name__ == "__main__":
    main()
