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
