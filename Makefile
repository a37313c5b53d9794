# Two commands do all the set-up on a fresh machine (see README.md):
#   make run     install into .venv and run the main job (poolsim run: a Standard pool
#                under the default user model, with its report)
#   make check   install into .venv and run lint, types and tests
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run check test test-fast lint protos clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/poolsim run

check: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/check

test: $(STAMP)
	$(BIN)/pytest -q

test-fast: $(STAMP)
	$(BIN)/pytest -q -m fast

protos: $(STAMP)
	$(BIN)/python scripts/gen_protos.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
