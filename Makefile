# Quick start: `make demo` and `make test` on a fresh clone (python3 and make are all they need).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA_DIR ?= data

.PHONY: demo test test-fast lint types pytest bench clean-data dagster

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

# DATA_DIR is quoted in every recipe: a data directory may lie under "My Documents".
demo: $(STAMP)
	$(BIN)/settler demo --data-dir "$(DATA_DIR)"

test: lint types pytest

# The fast tier: unit tests (no real store beyond a temp dir; the only child processes are fresh
# interpreters checking what an import loads), for the edit-test loop;
# its property tests run a quarter of their examples (the `dev` profile in tests/profiles.py).
test-fast: $(STAMP)
	HYPOTHESIS_PROFILE=dev $(BIN)/pytest -q -p no:cacheprovider tests/unit

lint: $(STAMP)
	$(BIN)/ruff check settler_pipeline dagster_project tests benchmarks
	$(BIN)/ruff format --check settler_pipeline dagster_project tests benchmarks
	$(BIN)/lint-imports

types: $(STAMP)
	$(BIN)/mypy settler_pipeline dagster_project

# The full gate on TEST_WORKERS processes (pytest-xdist), a test file per worker at a time so a file's
# module fixtures (the demo data, the webserver) are built once; TEST_WORKERS=0 runs in this process.
TEST_WORKERS ?= 2
pytest: $(STAMP)
	HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-ci} $(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

dagster: $(STAMP)
	mkdir -p "$(DATA_DIR)/.dagster"
	test -s "$(DATA_DIR)/.dagster/dagster.yaml" || printf 'python_logs:\n  managed_python_loggers: [settler_pipeline]\nnux:\n  enabled: false\n' > "$(DATA_DIR)/.dagster/dagster.yaml"
	data="$$(cd "$(DATA_DIR)" && pwd)" && DAGSTER_HOME="$$data/.dagster" SETTLER_DATA_DIR="$$data" $(BIN)/dagster dev -w workspace.yaml

clean-data:
	find "$(DATA_DIR)" -mindepth 1 ! -name .gitkeep ! -name README.md -exec rm -rf {} +
