"""Would choosing the numeric embedding on the validation split pay? (the quality issue)

On the quality benchmark's sets and splits, fits the net without an embedding (the
"balanced" preset, so the candidate the default preset's choice starts from) and the same net
with piecewise-linear embeddings (8 bins), each with the default's eight members and as a
one-member probe (what the default preset's ``numeric_embedding="auto"`` decides on,
``probe_members=1``), and scores
the eight-member fits on the test rows: each alone; the one the default chooses (``chosen``:
the embedded fit only when the embedded probe's validation loss is lower by more than
``CHOICE_Z`` standard errors of the paired per-block difference); ``probe z>T``: the same rule
at other thresholds; ``full z>1``: the rule on the eight-member fits themselves at one
standard error (the default before the probes, at the cost of both full fits); the one whose
best validation loss was lower (``lower_total``; both hold out the same validation rows: same
seed, same ``validation_fraction``); and the better of the two on the test rows (an oracle, the
most the choice could give). ``average``: the mean of the two fits' test predictions
(probabilities for class tasks), one ensemble of both; ``choose3``: the chosen fit, or the
average where its validation loss is lower beyond the noise (the same paired rule, on per-row
losses computed here from the predictions: squared error over the training variance, log loss;
an estimate of what a three-way choice inside the net would do); ``oracle3``: the best of the
three on the test rows. ``time``: the probes' and the chosen fit's seconds over both full fits'
(one process each, single-threaded, as quality.py fits). Every split's result is written to
benchmarks/results/embedding_choice.json. Errors as in ``quality.py``, divided by per-target
LightGBM's from ``quality.py``'s cache where it has them (run ``quality.py --models lightgbm``
first).

    python benchmarks/embedding_choice.py [--sets scene,enb] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

#: thresholds on the probes' paired gain's z (mean over standard error) reported next to the rule's
THRESHOLDS = (0.5, 1.0, 2.0)
CANDIDATES = {"plain": "net:numeric_embedding=none,n_bins=8", "ple8": "net:numeric_embedding=ple,n_bins=8"}


def _gain_z(plain: Any, embedded: Any, scores: dict[str, float]) -> tuple[float, int]:
    """The embedded fit's paired per-block validation gain over the plain one: its mean over
    its standard error, and the number of blocks."""
    import numpy as np

    a, b = getattr(plain, "_valid_blocks", None), getattr(embedded, "_valid_blocks", None)
    gain = (np.asarray(a) - np.asarray(b) if a is not None and b is not None
            else np.asarray([scores["none"] - scores["ple"]]))
    if len(gain) > 1 and gain.std(ddof=1) > 0:
        return float(gain.mean() / (gain.std(ddof=1) / math.sqrt(len(gain)))), len(gain)
    return (math.inf if gain.mean() > 0 else -math.inf), len(gain)


def one(set_name: str, split: int) -> dict[str, Any]:
    import datasets
    import numpy as np
    import quality

    from polyhead.models.net import _CHOICE_BLOCKS, _beyond_noise, _choice_z, _embedding_wins
    from polyhead.models.presets import PRESETS

    members = PRESETS["default"]["probe_members"]

    quality._worker_init()
    data = datasets.load(set_name)
    train, test = data.splits[split]
    out: dict[str, Any] = {"set": set_name, "split": split}
    models, tests, valids, probes = {}, {}, {}, {}
    for name, spec in CANDIDATES.items():
        model = models[name] = quality.make_model(spec, seed=split)
        model._score_blocks = _CHOICE_BLOCKS  # what numeric_embedding="auto" decides on
        outputs, seconds = tests[name] = quality.fit_outputs(model, data, train, test)
        X_valid = data.X.iloc[train].iloc[model.validation_indices_]
        valids[name] = model._predict_outputs(model._check_X(X_valid, fit=False))
        errors = quality.task_errors(data, train, test, outputs)
        out[name] = float(np.nanmean(list(errors.values())))
        out[f"{name}_valid"] = model._validation_score()
        out[f"{name}_s"] = seconds
        probe = probes[name] = quality.make_model(f"{spec},n_ensemble={members}", seed=split)
        probe._score_blocks = _CHOICE_BLOCKS
        out[f"{name}_probe_s"] = quality.fit_outputs(probe, data, train, test)[1]
        out[f"{name}_probe_valid"] = probe._validation_score()
    # the default's rule: the embedding only when its probe wins beyond the noise
    probe_scores = {"none": out["plain_probe_valid"], "ple": out["ple8_probe_valid"]}
    chosen = "ple8" if _embedding_wins(probes["plain"], probes["ple8"], probe_scores, _choice_z(members)) else "plain"
    out["chosen"], out["chosen_name"] = out[chosen], chosen
    out["time"] = ((out["plain_probe_s"] + out["ple8_probe_s"] + out[f"{chosen}_s"])
                   / (out["plain_s"] + out["ple8_s"]))
    z, out["blocks"] = _gain_z(probes["plain"], probes["ple8"], probe_scores)
    out["probe_z"] = z
    for threshold in THRESHOLDS:
        out[f"probe z>{threshold}"] = out["ple8" if z > threshold else "plain"]
    # the rule on the full fits (the default before the probes)
    scores = {"none": out["plain_valid"], "ple": out["ple8_valid"]}
    full = "ple8" if _embedding_wins(models["plain"], models["ple8"], scores) else "plain"
    out["full z>1"], out["full_name"] = out[full], full
    out["gain_z"] = _gain_z(models["plain"], models["ple8"], scores)[0]
    lower = min(CANDIDATES, key=lambda n: out[f"{n}_valid"])
    out["lower_total"] = out[lower]
    out["oracle"] = min(out[n] for n in CANDIDATES)
    # one ensemble of both fits, and a three-way choice on the validation rows
    average = {k: (np.asarray(tests["plain"][0][k], float) + np.asarray(tests["ple8"][0][k], float)) / 2
               for k in tests["plain"][0]}
    out["average"] = float(np.nanmean(list(quality.task_errors(data, train, test, average).values())))
    rows = models["plain"].validation_indices_
    assert (rows == models["ple8"].validation_indices_).all()  # same seed, same split
    assert (rows == probes["plain"].validation_indices_).all()
    y_valid = data.y.iloc[train].iloc[rows]
    per_row = {name: row_losses(data, data.y.iloc[train], y_valid, valids[name]) for name in CANDIDATES}
    per_row["average"] = row_losses(data, data.y.iloc[train], y_valid, {
        k: (np.asarray(valids["plain"][k], float) + np.asarray(valids["ple8"][k], float)) / 2
        for k in valids["plain"]})
    blocks = {n: np.array([np.nanmean(part) for part in np.array_split(v, min(_CHOICE_BLOCKS, len(v)))])
              for n, v in per_row.items()}
    gain3 = blocks[chosen] - blocks["average"]
    out["choose3_name"] = "average" if _beyond_noise(gain3[np.isfinite(gain3)]) else chosen
    out["choose3"] = out[out["choose3_name"]]
    out["oracle3"] = min(out["plain"], out["ple8"], out["average"])
    return out


def row_losses(data: Any, y_train: Any, y_valid: Any, outputs: dict[str, Any]) -> Any:
    """Each validation row's loss summed over tasks (NaN where a row has no label at all):
    squared error over the training variance, log loss (binary, multiclass, each label)."""
    import numpy as np

    from polyhead.tasks import fit_task

    total = np.zeros(len(y_valid))
    seen = np.zeros(len(y_valid), dtype=bool)
    for task in data.tasks:
        state = fit_task(task, y_train)
        out = np.asarray(outputs[task.name], dtype=float)
        if state.kind == "regression":
            truth = state.values(y_valid)
            loss = (out - truth) ** 2 / np.nanvar(state.values(y_train))
        elif state.kind == "multilabel":
            truth = state.values(y_valid)
            p = np.clip(out, 1e-7, 1 - 1e-7)
            loss = np.nanmean(-(truth * np.log(p) + (1 - truth) * np.log(1 - p)), axis=1)
        else:
            codes = state.class_codes(state.column(y_valid))
            if state.kind == "binary":
                p = np.clip(out, 1e-7, 1 - 1e-7)
                loss = -np.where(codes == 1, np.log(p), np.log(1 - p))
            else:
                loss = -np.log(np.clip(out[np.arange(len(codes)), np.maximum(codes, 0)], 1e-7, 1))
            loss = np.where(codes == -1, np.nan, loss)
        keep = np.isfinite(loss)
        total[keep] += loss[keep]
        seen |= keep
    return np.where(seen, total, np.nan)


def lightgbm_error(set_name: str, splits: int) -> float | None:
    import quality

    values = []
    for split in range(splits):
        path = quality.cache_path(quality.RESULTS, set_name, "lightgbm", split)
        if path.exists():
            values.append(json.loads(path.read_text())["error"])
    return statistics.mean(values) if values else None


def main() -> None:
    import datasets
    import quality

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default=",".join(quality.DEFAULT_SETS))
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    jobs = []
    for name in args.sets.split(","):
        data = datasets.load(name)
        if data is None:
            print(f"skipping {name}: not in ../shared/data", file=sys.stderr)
            continue
        jobs += [(name, split) for split in range(len(data.splits))]
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(one, *zip(*jobs, strict=True)))
    out = HERE / "results" / "embedding_choice.json"  # kept in git, as quality.py's results
    quality.write_atomic(out, json.dumps(results, indent=0) + "\n")
    columns = ["plain", "ple8", "chosen", *(f"probe z>{t}" for t in THRESHOLDS), "full z>1",
               "lower_total", "oracle", "average", "choose3", "oracle3"]
    print("| set | " + " | ".join(columns) + " | chose ple8 | chose average | time | lightgbm |")
    print("|---|" + "---|" * (len(columns) + 4))
    ratios: dict[str, list[float]] = {c: [] for c in columns}
    times: dict[str, float] = {}
    for name in dict.fromkeys(r["set"] for r in results):
        rows = [r for r in results if r["set"] == name]
        means = {c: statistics.mean(r[c] for r in rows) for c in columns}
        times[name] = statistics.mean(r["time"] for r in rows)
        lgbm = lightgbm_error(name, len(rows))
        picked = sum(r["chosen_name"] == "ple8" for r in rows)
        averaged = sum(r["choose3_name"] == "average" for r in rows)
        print(f"| {name} | " + " | ".join(f"{means[c]:.4f}" for c in columns)
              + f" | {picked}/{len(rows)} | {averaged}/{len(rows)} | {times[name]:.2f}"
              + f" | {'' if lgbm is None else f'{lgbm:.4f}'} |")
        if lgbm:
            for c in columns:
                ratios[c].append(means[c] / lgbm)
    if any(ratios.values()):
        print("| error / lightgbm (geo. mean) | " + " | ".join(
            f"{math.exp(statistics.mean(math.log(x) for x in ratios[c])):.3f}" for c in columns) + " | | | | |")
        print("| sets better than lightgbm | " + " | ".join(
            f"{sum(x < 1 for x in ratios[c])}/{len(ratios[c])}" for c in columns) + " | | | | |")
    print(f"time of the probes and the chosen fit over both full fits (geo. mean over sets): "
          f"{math.exp(statistics.mean(math.log(t) for t in times.values())):.3f}")


if __name__ == "__main__":
    main()
