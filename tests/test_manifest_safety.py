"""A model file is untrusted input: any malformed manifest is one ModelFileError, for load and
for `polyhead info`, and nothing is allocated for what a tampered manifest claims."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import FAST, MIXED_TASKS, make_mixed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import polyhead
from polyhead import ModelFileError, MultiTaskNet
from polyhead.cli import main
from polyhead.persistence import MANIFEST


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("manifests")
    X, y = make_mixed(80)
    MultiTaskNet(tasks=MIXED_TASKS, **FAST).fit(X, y).save(root / "net")
    MultiTaskNet(tasks=MIXED_TASKS, n_ensemble=2, **FAST).fit(X, y).save(root / "ensemble")
    polyhead.MultiTaskForest(tasks=MIXED_TASKS, n_estimators=3, random_state=0).fit(X, y).save(root / "forest")
    polyhead.Separate(polyhead.MultiTaskLinear(), tasks=MIXED_TASKS).fit(X, y).save(root / "separate")
    return root, X


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def _edit(path: Path, change) -> None:
    manifest = json.loads((path / MANIFEST).read_text())
    change(manifest)
    (path / MANIFEST).write_text(json.dumps(manifest))


def _info(path: Path, capsys) -> tuple[int, str]:
    try:
        main(["info", str(path)])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("name, raw_change, match", [
    ("1e999", lambda t: t.replace('"scale": ', '"scale": 1e999, "x": ', 1), "1e999, which is not finite"),
    ("NaN literal", lambda t: t.replace('"scale": ', '"scale": NaN, "x": ', 1), "holds NaN"),
    ("negative version", lambda t: re.sub(r'"format_version": \d+', '"format_version": -1', t), "format_version"),
    ("truncated", lambda t: t[: len(t) // 2], "corrupted"),
])
def test_raw_manifest_damage(models, tmp_path, capsys, name, raw_change, match):
    root, _ = models
    path = _copy(root / "net", tmp_path / "m")
    text = (path / MANIFEST).read_text()
    (path / MANIFEST).write_text(raw_change(text))
    with pytest.raises(ModelFileError, match=match):
        polyhead.load(path)
    code, err = _info(path, capsys)
    assert code == 2 and match.split(",")[0].split(" ")[0] in err


@pytest.mark.parametrize("change, match", [
    (lambda m: m["tasks"][0]["state"].update(scale="big"), "scale must be a number"),
    (lambda m: m["tasks"][0]["state"].update(scale=-1.0), "scale must be a finite positive"),
    (lambda m: m["tasks"][0]["task"].update(kind="nope"), "unknown kind 'nope'"),
    (lambda m: m["tasks"][1]["state"].update(classes="yes"), "classes must be a list"),
    (lambda m: m["features"]["columns"][0].update(scale=0.0), "invalid column entry"),
    (lambda m: m["features"]["columns"][0].update(name=7), "invalid column entry"),
    (lambda m: m["architecture"].update(hidden=[-3]), "invalid architecture: hidden"),
    (lambda m: m["architecture"].update(n_ensemble="two"), "n_ensemble"),
    (lambda m: m["architecture"].update(heads={"x": 1}), "heads do not match"),
    (lambda m: m.update(y_format="pickle"), "y_format"),
    (lambda m: m.update(feature_columns=None), "feature_columns"),
    (lambda m: m.update(n_features_in=10**12), "n_features_in"),
    (lambda m: m.update(tasks=[]), "invalid tasks"),
])
def test_every_malformed_field_is_a_model_file_error(models, tmp_path, capsys, change, match):
    root, _ = models
    path = _copy(root / "net", tmp_path / "m")
    _edit(path, change)
    with pytest.raises(ModelFileError, match=match):
        polyhead.load(path)
    code, err = _info(path, capsys)
    assert code == 2 and "error:" in err and err.count("\n") == 1


@pytest.mark.parametrize("hidden, match", [
    ([20_000_000], "invalid architecture: hidden"),               # over the per-layer bound
    ([100_000, 100_000], "do not match the architecture"),       # 40 GB if it were built
])
def test_a_claimed_giant_layer_allocates_nothing(models, tmp_path, hidden, match):
    """A manifest claiming layers that would take gigabytes to build is refused before any
    memory is taken for them (the peak stays near what importing torch costs)."""
    root, _ = models
    path = _copy(root / "net", tmp_path / "m")
    _edit(path, lambda m: m["architecture"].update(hidden=hidden))
    _edit(path, lambda m: m["params"].update(hidden=hidden))
    script = (
        "import resource, polyhead, torch\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        f"    polyhead.load({str(path)!r})\n"
        "except polyhead.ModelFileError as exc:\n"
        "    print('refused:', exc)\n"
        "print('grew_mib', (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "refused:" in out.stdout and match in out.stdout, (out.stdout, out.stderr)
    grew = float(out.stdout.split("grew_mib")[1])
    assert grew < 300  # building the layer would take over 5,000 MiB


#: raise for a deep run: POLYHEAD_FUZZ_EXAMPLES=2000 pytest tests/test_manifest_safety.py
FUZZ_EXAMPLES = int(os.environ.get("POLYHEAD_FUZZ_EXAMPLES", "40"))

MUTATIONS = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8), st.sampled_from(["01", "i8,i8", "<U3", "|O", "nan", "inf", "-1", "1e400"]),
    st.lists(st.integers(-5, 5), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


def _paths(value, prefix=()):
    """Every path into a JSON document (lists and dicts), for mutation."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:4]):
            yield from _paths(v, (*prefix, i))


@pytest.mark.parametrize("which", ["net", "ensemble", "forest", "separate"])
def test_fuzzed_manifests_load_or_fail_with_a_model_file_error(models, tmp_path, which):
    root, X = models
    original = json.loads((root / which / MANIFEST).read_text())
    paths = [p for p in _paths(original) if p and p[0] not in ("history",)]

    @given(st.sampled_from(paths), MUTATIONS)
    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    def run(path, value):
        import shutil

        target = tmp_path / "fuzz"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(root / which, target)
        manifest = json.loads(json.dumps(original))
        node = manifest
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        (target / MANIFEST).write_text(json.dumps(manifest))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                model = polyhead.load(target)
            except ModelFileError:
                return
            try:
                pred = model.predict(X.head(5))
            except polyhead.PolyheadError:
                return
        numbers = pred.select_dtypes("number").to_numpy(dtype=float)
        assert np.isfinite(numbers).all() or pred.isna().any().any()

    run()


@pytest.mark.parametrize("text", ["01", "0\x1b", "i8,i8", "(2,)i4", "V8", "M8[ns]", "<U99999999", "O,O"])
def test_a_strange_label_dtype_is_refused_without_numpy_parsing_it(models, tmp_path, text):
    """numpy's dtype parser evaluates comma strings: '01' raised SyntaxError from ast (CI, fuzz)."""
    import shutil

    root, _ = models
    target = tmp_path / "m"
    shutil.copytree(root / "forest", target)
    manifest = json.loads((target / MANIFEST).read_text())
    states = [t["state"] for t in manifest["tasks"] if "classes_dtype" in t.get("state", {})]
    assert states
    states[0]["classes_dtype"] = text
    (target / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="classes_dtype"):
        polyhead.load(target)


@given(st.floats(0.0, 0.999))
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_truncated_manifests_are_model_file_errors(tmp_path_factory, share):
    import shutil

    source = tmp_path_factory.getbasetemp() / "truncation-source"
    if not source.exists():
        X, y = make_mixed(40)
        MultiTaskNet(tasks=MIXED_TASKS, **FAST).fit(X, y).save(source)
    target = tmp_path_factory.mktemp("truncated")
    shutil.rmtree(target)
    shutil.copytree(source, target)
    text = (target / MANIFEST).read_text()
    (target / MANIFEST).write_text(text[: int(len(text) * share)])
    with pytest.raises(ModelFileError):
        polyhead.load(target)


@pytest.mark.parametrize(("key", "preset_value"), [("patience", 30), ("probe_members", 1)])
def test_a_preset_count_missing_from_an_older_file_is_the_presets_and_a_bad_one_is_refused(
        models, tmp_path, key, preset_value):
    root, X = models
    assert getattr(polyhead.load(root / "net"), f"{key}_") == preset_value
    older = _copy(root / "net", tmp_path / "older")
    _edit(older, lambda m: m["training"].pop(key))
    loaded = polyhead.load(older)
    assert getattr(loaded, f"{key}_") == preset_value and loaded.predict(X).shape[0] == len(X)
    for bad in ("30", 0, True, 2.5):
        path = _copy(root / "net", tmp_path / f"bad{bad!s}")
        _edit(path, lambda m, bad=bad: m["training"].__setitem__(key, bad))
        with pytest.raises(ModelFileError, match=key):
            polyhead.load(path)
