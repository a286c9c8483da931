# mmgen developer commands. `make demo` and `make test` do all setup themselves.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.mmgen-setup
EXTRAS ?= dev,app
# pytest workers: the suite is CPU-bound; 2 processes on the 2-core CI machine.
TEST_WORKERS ?= 2

# Headless browser for the Playwright tests of the Gradio app (tests/browser.py reads the
# same variable). Playwright cannot download its own browser here: Debian's package it is.
MMGEN_CHROMIUM ?= /usr/bin/chromium

.PHONY: setup browser demo demo-foundation test test-fast bench app screenshots lint format clean

setup: $(STAMP) browser

# Re-runs only when the dependency declarations change (idempotent, quick otherwise).
$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -qq --disable-pip-version-check \
		-c requirements/constraints.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

# Installs Debian's chromium with apt-get when missing (root only); a no-op when it is there.
# Tries the existing package lists first and runs `apt-get update` only if that fails.
browser:
	@test -x "$(MMGEN_CHROMIUM)" || { \
		if [ "$$(id -u)" != 0 ]; then \
			echo "error: no headless browser at $(MMGEN_CHROMIUM) (needed by the Playwright tests)." >&2; \
			echo "  Install it as root: apt-get update && apt-get install -y chromium" >&2; \
			echo "  or point MMGEN_CHROMIUM at a Chromium executable, then re-run make setup." >&2; \
			exit 1; \
		fi; \
		echo "Installing Debian's chromium (headless browser for the Playwright tests)..."; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt_install="apt-get install -y -qq --no-install-recommends chromium fonts-liberation"; \
		$$apt_install >/dev/null 2>&1 || { apt-get update -qq && $$apt_install >/dev/null; } \
			|| { echo "error: apt-get could not install chromium" >&2; exit 1; }; \
		test -x "$(MMGEN_CHROMIUM)" \
			|| { echo "error: chromium installed but $(MMGEN_CHROMIUM) is not executable" >&2; exit 1; }; \
	}

# The main job: text-to-image with the bundled shapes-t2i (a labelled grid, and how many
# images show what their prompt asked for, held-out compositions included).
demo: $(STAMP)
	$(PY) examples/t2i_demo.py --out outputs/demo

# The training engine and the bundled classifiers (train, kill, resume, save, load).
demo-foundation: $(STAMP)
	$(PY) examples/foundation_demo.py

test: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -n $(TEST_WORKERS) --durations=15

test-fast: setup
	$(PY) -m pytest -x -q -m "not slow"

# Speed against diffusers on the same weights (issue #22: docs/performance.md), then the rest.
# About 40 minutes on 2 cores; the sampler curves only measure rows missing from their cache.
bench: $(STAMP)
	$(PY) scripts/sampler_curves.py --workers 2
	$(PY) benchmarks/report.py --write
	$(PY) benchmarks/attention.py
	$(PY) benchmarks/attention.py --dtype bf16 --batch 2 --heads 8 --dim 40 \
		--lengths 1024 4096 --backends sdpa tiled
	$(PY) benchmarks/onestep.py
	$(PY) benchmarks/style.py
	$(PY) benchmarks/color.py

# The web app on http://127.0.0.1:7860 (mmgen app --help for its options).
app: $(STAMP)
	$(VENV)/bin/mmgen app

# The README's and docs/app.md's screenshots, taken by the browser test in Chromium.
screenshots: setup
	MMGEN_SCREENSHOTS=docs/images $(PY) -m pytest -q tests/test_app_browser.py

lint: $(STAMP)
	$(VENV)/bin/ruff check mmgen apps tests benchmarks examples scripts

format: $(STAMP)
	$(VENV)/bin/ruff format mmgen apps tests benchmarks examples scripts

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache runs
