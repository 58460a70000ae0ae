# Every target bootstraps its own virtualenv, so a fresh clone needs only python3 (3.11+) and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CHECKOV_VENV := .venv-checkov
CHECKOV_VERSION := 3.3.30

.PHONY: help venv test lint fmt demo bench pod-lock clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# checkov pins an old `packaging` that conflicts with Pulumi's, so it lives in its own virtualenv.
$(CHECKOV_VENV)/.installed:
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet 'checkov==$(CHECKOV_VERSION)'
	touch $@

venv: $(BIN)/.installed ## create .venv with the project and its dev tools

# The two virtualenvs install side by side, and the tests run in two processes, a test file
# each at a time (a file's module fixtures, like the hostile-input probes, then run once): many
# integration tests wait on timers and subprocesses, so two cores overlap them.
test: ## run every test (unit and integration)
	@$(MAKE) --no-print-directory -j2 $(BIN)/.installed $(CHECKOV_VENV)/.installed
	QWEN_STRESS_CHECKOV=$(CURDIR)/$(CHECKOV_VENV)/bin/checkov $(BIN)/pytest -n 2 --dist loadfile

lint: $(BIN)/.installed ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy . .github/scripts

fmt: $(BIN)/.installed ## format and fix what ruff can
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The capacity plan against the autoscaling twin of the dev stack (Qwen2.5-7B-AWQ on T4 nodes,
# 1-5 replicas): 20-minute steps of 10 to 90 users, so replicas grow during the ramp (a new node
# and replica take about ten minutes) and shrink in the cool-down (after the 600 s scale-down
# window). Time scale 0.02 runs those two and a half hours of cluster time in three minutes.
DEMO_ARGS ?= --config Pulumi.dev.yaml --plan capacity --time-scale 0.02 --step-duration 20m \
	--baseline-users 10 --step-users 20 --max-users 90 --soak 10m
# The demo needs only the package, not the dev tools: a fresh machine is serving sooner.
$(BIN)/.base-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

# After `make venv` the full install serves as well: no second pip run before the demo.
DEMO_INSTALL := $(if $(wildcard $(BIN)/.installed),$(BIN)/.installed,$(BIN)/.base-installed)

demo: $(DEMO_INSTALL) ## the local load test end to end (about 3.5 minutes once .venv exists)
	$(BIN)/qwen-stress run $(DEMO_ARGS) --out runs/demo-$$(date +%Y%m%d-%H%M%S)

bench: $(BIN)/.installed ## run the benchmarks and print their numbers
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# The load-test pods' hashed lock, and the image build stage's, resolved for the pods' platform
# (CPython 3.11 on linux x86_64, domain/versions.py POD_PYTHON_IMAGE) from PyPI alone: machine-local
# pip settings are ignored. Pins are kept; `make pod-lock LOCK_ARGS=--upgrade` moves them.
LOCK_DIR := loadtest/cloud/data
LOCK_ENV := PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= PIP_CONSTRAINT=
LOCK_FLAGS := --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
	--no-emit-find-links --index-url https://pypi.org/simple $(LOCK_ARGS)
pod-lock: $(BIN)/.installed ## regenerate the pods' hashed lock (on CPython 3.11, linux x86_64)
	@$(BIN)/python -c 'import platform, sys; sys.exit(0 if sys.version_info[:2] == (3, 11) and sys.platform == "linux" and platform.machine() == "x86_64" else "make pod-lock: the pods run CPython 3.11 on linux x86_64; resolve their lock there")'
	cd $(LOCK_DIR) && $(LOCK_ENV) $(CURDIR)/$(BIN)/pip-compile $(LOCK_FLAGS) \
		--output-file pod-requirements.txt pod-requirements.in
	cd $(LOCK_DIR) && $(LOCK_ENV) $(CURDIR)/$(BIN)/pip-compile $(LOCK_FLAGS) \
		--output-file build-requirements.txt build-requirements.in

clean: ## remove virtualenvs and caches (run directories are kept)
	rm -rf $(VENV) $(CHECKOV_VENV) .mypy_cache .pytest_cache .ruff_cache
