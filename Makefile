# The two commands a fresh clone needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --quiet --disable-pip-version-check

.PHONY: demo test bench lint clean install dev browser

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# Exactly this torch first: any other pin pulls gigabytes of CUDA wheels.
	$(PIP) install torch==2.13.0
	$(PIP) install -e .
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed pyproject.toml
	$(PIP) install -e ".[dev,plot,serve]"
	touch $@

install: $(VENV)/.installed
dev: $(VENV)/.dev-installed

demo: $(VENV)/.installed
	$(VENV)/bin/polyhead demo

lint: $(VENV)/.dev-installed
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy src/polyhead

# The report's browser test needs Debian's chromium; where it cannot be installed (no root, no
# apt) the test is skipped, never failed.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
	  || echo "chromium could not be installed: the browser test will be skipped"; }

test: lint browser
	$(VENV)/bin/pytest -q

bench: $(VENV)/.dev-installed
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
