import json
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent / "polyhead"


def run(*args, timeout=300):
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=timeout)


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


@pytest.mark.realdata
def test_readme_walkthrough_end_to_end(tmp_path):
    """Run the README's shell walk-through through the installed entry point."""
    import re
    import shlex

    from conftest import SHARED_DATA, shared_data

    shared_data("penguins")
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"<!-- cli-walkthrough.*?```bash\n(.*?)```", readme, flags=re.S).group(1)
    commands = [c for c in block.replace("\\\n", " ").splitlines() if c.strip()]
    assert len(commands) == 4
    outputs = []
    for command in commands:
        argv = [a.replace("../shared/data", str(SHARED_DATA)) for a in shlex.split(command)]
        assert argv[0] == "polyhead"
        proc = subprocess.run([str(BIN), *argv[1:]], cwd=tmp_path, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, (command, proc.stderr)
        outputs.append(proc.stdout)
    manifest = json.loads((tmp_path / "penguins-model" / "manifest.json").read_text())
    assert [t["task"]["kind"] for t in manifest["tasks"]] == ["multiclass", "binary", "regression"]
    assert "year" not in manifest["feature_columns"]
    import pandas as pd

    preds = pd.read_csv(tmp_path / "preds.csv")
    assert len(preds) == 344
    assert list(preds.columns[:4]) == ["island", "species", "sex", "body_mass_g"]
    assert {"species:Adelie", "sex:female"} <= set(preds.columns)
    metrics = json.loads(outputs[3])["metrics"]
    assert metrics["sex"]["n"] == 333 and metrics["body_mass_g"]["n"] == 342
    assert metrics["species"]["accuracy"] > 0.9
    assert "Tasks (344 rows, 4 features)" in outputs[0]
