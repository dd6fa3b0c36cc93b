# Coalition 5: the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 19211

.PHONY: run test test-deploy bench fuzz lint format clean

# A virtual environment with Coalition installed in editable mode, plus the test tools.
$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -m venv $(VENV) || { echo "make: cannot create a venv: apt-get install python3-venv"; exit 1; }
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	@touch $@

# A working farm on this machine: the server on SQLite under ./var and a local worker.
run: $(VENV)/.installed
	@mkdir -p var
	@$(PY) -m coalition.devfarm --port $(PORT) --datadir var

# The whole suite. COALITION_STRICT=1 (set by CI) turns "skipped: missing system
# dependency" into a failure.
test: $(VENV)/.installed
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The deployment tests alone: packages, units and roles on Debian 12 containers booting a
# real systemd (root, systemd-container, mmdebstrap, reprepro: see .ci/run), and the wheel.
test-deploy: $(VENV)/.installed
	$(PY) -m pytest -q tests/packaging $(PYTEST_ARGS)

# The fuzz suite at length (CI runs it with a few examples per operation, as part of `test`):
# FUZZ_EXAMPLES examples per API operation and 5x that per property, on SQLite and MariaDB.
FUZZ_EXAMPLES ?= 300
fuzz: $(VENV)/.installed
	COALITION_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q tests/fuzz $(PYTEST_ARGS)

bench: $(VENV)/.installed
	@for b in bench/*.py; do echo "# $$b" >&2; $(PY) $$b || exit 1; done

# Style, types (the engines checked against the Store/Tx protocols) and the layer rules of
# DESIGN.md section 3 (import-linter contracts in pyproject.toml).
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf var build dist *.egg-info .pytest_cache .ruff_cache
