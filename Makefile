# mmgen developer commands. `make demo` and `make test` do all setup themselves.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.mmgen-setup
EXTRAS ?= dev,app
# pytest workers: the suite is CPU-bound; 2 processes on the 2-core CI machine.
TEST_WORKERS ?= 2

.PHONY: setup demo demo-foundation test test-fast bench lint format clean

setup: $(STAMP)

# Re-runs only when the dependency declarations change (idempotent, quick otherwise).
$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -qq --disable-pip-version-check \
		-c requirements/constraints.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

# The main job: text-to-image with the bundled shapes-t2i (a labelled grid, and how many
# images show what their prompt asked for, held-out compositions included).
demo: setup
	$(PY) examples/t2i_demo.py --out outputs/demo

# The training engine and the bundled classifiers (train, kill, resume, save, load).
demo-foundation: setup
	$(PY) examples/foundation_demo.py

test: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -n $(TEST_WORKERS) --durations=15

test-fast: setup
	$(PY) -m pytest -x -q -m "not slow"

bench: setup
	$(PY) benchmarks/attention.py
	$(PY) benchmarks/unet_step.py --markdown
	$(PY) benchmarks/generate_cli.py
	$(PY) benchmarks/onestep.py
	$(PY) benchmarks/style.py
	$(PY) benchmarks/color.py

lint: setup
	$(VENV)/bin/ruff check mmgen tests benchmarks examples scripts

format: setup
	$(VENV)/bin/ruff format mmgen tests benchmarks examples scripts

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache runs
