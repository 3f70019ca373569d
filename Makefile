# The README's two commands: `make demo` and `make test`. Both set everything up.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SYSTEM_TOOLS := h5dump chromium socat pdftoppm
SYSTEM_PACKAGES := hdf5-tools chromium socat poppler-utils

DATA_DIR ?= data
STATION ?= hardware/stations/sim.toml
DEMO_RECIPE ?= seeds/recipes/quick.toml
DEMO_STANDARDS ?= seeds/standards/nd-pr-5.toml
PORT ?= 8501
# one demo calibration per station: an Ocean bench's axis is not the SCPI bench's
DEMO_CALIBRATION = $(DATA_DIR)/calibrations/demo-$(basename $(notdir $(STATION))).h5

.PHONY: test test-fast lint demo system-deps clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@echo "compiling the analysis kernels into numba's cache (once per install)"
	$(PY) -c "import analysis; print(analysis.warm_up_kernels())"
	touch $(STAMP)

# Debian packages the tests need (h5dump as independent reader, Chromium for the
# browser test, socat for line tests). Installed when missing and we are root.
system-deps:
	@missing=""; for t in $(SYSTEM_TOOLS); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing system packages for:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; \
	  else echo "missing system tools:$$missing (install: apt-get install $(SYSTEM_PACKAGES))"; fi; \
	fi

# Two worker processes, each taking whole test files (module fixtures, such as the docs' sh runs, start once):
# most system tests wait on simulated instruments, so two workers on two cores about halve the suite's time.
TEST_WORKERS ?= 2
test: $(STAMP) system-deps lint
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

# ruff (lint, and the format is as ruff writes it), pyright (basic mode) and the import contracts,
# all configured in pyproject.toml
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pyright --project pyproject.toml
	$(VENV)/bin/lint-imports

# The unit tests only (tests/unit: no simulators, no browser), without the few marked slow
# (child processes, thousands of generated config cases), each under its per-test limit of seconds.
# The config-mutation module is all slow and takes seconds just to collect, so it is not collected.
test-fast: $(STAMP)
	$(PY) -m pytest tests/unit -m "not slow" --ignore=tests/unit/test_config_mutations.py -q

# The simulated bench end to end: check it, calibrate it (once per station), then serve the
# live app on 127.0.0.1 while a demo trial runs; Ctrl-C stops the app.
# `make demo STATION=hardware/stations/sim-ocean.toml` runs it on the simulated Ocean HDX.
demo: $(STAMP)
	$(PY) -m daq check --station $(STATION)
	test -f $(DEMO_CALIBRATION) || \
	  $(PY) -m daq calibrate $(DEMO_STANDARDS) --station $(STATION) --out $(DEMO_CALIBRATION)
	@echo "live app: http://127.0.0.1:$(PORT)  (the demo trial starts in a few seconds; Ctrl-C to stop)"
	( $(PY) -m daq run $(DEMO_RECIPE) --station $(STATION) --data-dir $(DATA_DIR) \
	    --calibration $(DEMO_CALIBRATION) > $(DATA_DIR)/demo-run.log 2>&1 & \
	  REMDAQ_DATA_DIR=$(DATA_DIR) $(VENV)/bin/streamlit run app.py --server.address 127.0.0.1 --server.port $(PORT) )

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
