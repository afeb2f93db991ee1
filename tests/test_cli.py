import json
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent / "polyhead"
# the installed script, or the module where the package is on the path but not installed
COMMAND = [str(BIN)] if BIN.exists() else [sys.executable, "-m", "polyhead"]


def run(*args, timeout=300):
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True, timeout=timeout)


def test_help_lists_commands_without_importing_torch():
    code = ("import sys\nsys.argv = ['polyhead', '--help']\nfrom polyhead.cli import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "assert 'sklearn' not in sys.modules, 'sklearn was imported'\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "demo" in out.stdout


def test_import_polyhead_is_light():
    code = "import sys, polyhead; assert 'torch' not in sys.modules and 'pandas' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.slow
def test_demo_prints_the_three_models():
    out = run("demo", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    models = [r["model"] for r in data["results"]]
    assert models == ["separate: regression net", "separate: classification net",
                      "joint net (2 heads)"]
    joint = data["results"][2]
    assert 0.5 < joint["MAE (rings)"] < 3 and 0.1 < joint["accuracy (rings_class)"] < 0.5
    assert "heads" in data["architecture"]


def test_unknown_command_is_usage_error():
    out = run("frobnicate")
    assert out.returncode == 2


def _readme_block(marker: str) -> list[str]:
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(rf"<!-- {marker}.*?```bash\n(.*?)```", readme, flags=re.S).group(1)
    return [c for c in block.replace("\\\n", " ").splitlines() if c.strip()]


def _run_lines(commands: list[str], cwd: Path) -> list[str]:
    import shlex

    outputs = []
    for command in commands:
        argv = shlex.split(command)
        assert argv[0] == "polyhead"
        proc = subprocess.run([*COMMAND, *argv[1:]], cwd=cwd, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, (command, proc.stderr)
        outputs.append(proc.stdout)
    return outputs


@pytest.mark.slow
def test_readme_walkthrough_end_to_end(tmp_path):
    """The README's shell walk-through, as a newcomer runs it: in an empty folder, with nothing
    but polyhead installed (the data comes from `polyhead dataset`)."""
    commands = _readme_block("cli-walkthrough")
    assert len(commands) == 6
    outputs = _run_lines(commands, tmp_path)
    manifest = json.loads((tmp_path / "abalone-model" / "manifest.json").read_text())
    assert [t["task"]["kind"] for t in manifest["tasks"]] == ["ordinal", "multiclass", "multiclass"]
    assert "rings" not in manifest["feature_columns"] and "sex" not in manifest["feature_columns"]
    import pandas as pd

    preds = pd.read_csv(tmp_path / "preds.csv")
    assert len(preds) == 4177
    assert list(preds.columns[:3]) == ["rings", "rings_class", "sex"]
    assert {"sex:M", "rings:10"} <= set(preds.columns)
    metrics = json.loads(outputs[4])["metrics"]
    assert metrics["rings"]["n"] == 4177 and 0.5 < metrics["rings"]["mae"] < 3
    assert "Tasks (4177 rows, 7 features)" in outputs[1]
    assert (tmp_path / "model.svg").read_text().lstrip().startswith("<?xml")


@pytest.mark.slow
def test_readme_compare_example_end_to_end(tmp_path):
    _run_lines(_readme_block("cli-walkthrough")[:1], tmp_path)     # abalone.csv
    _run_lines(_readme_block("cli-compare"), tmp_path)
    html = (tmp_path / "report.html").read_text()
    assert "joint net" in html and "separate nets" in html
