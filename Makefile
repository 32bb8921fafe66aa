# Quick start: `make demo` (the notebook series on the project's own demo data) and
# `make test` (everything CI checks). Each creates .venv and installs the project when missing.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.cglib-installed

.PHONY: demo test lab lint clean

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

demo: $(INSTALLED)
	$(BIN)/python -m cglib demo --profile demo

lint: $(INSTALLED)
	$(BIN)/ruff check cglib tests notebooks hubconf.py

test: lint
	CGLIB_PROFILE=smoke $(BIN)/python -m pytest tests notebooks --nbval-lax --nbval-current-env

lab: $(INSTALLED)
	$(BIN)/jupyter lab notebooks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
