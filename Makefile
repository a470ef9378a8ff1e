# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: run test lint typecheck fixtures bench mutate clean postgresql-server

# The browser tests drive Debian's Chromium (Playwright never downloads a browser here).
CHROMIUM := /usr/bin/chromium

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

run: $(STAMP)
	$(BIN)/web-chat serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) $(CHROMIUM) postgresql-server
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

$(CHROMIUM):
	apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium

# The tests start their own PostgreSQL from Debian's server binaries (/usr/lib/postgresql/N/bin), never a
# system cluster; installing the package is all the set-up they need.
postgresql-server:
	@test -n "$(wildcard /usr/lib/postgresql/*/bin/initdb)" || { apt-get update && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql; }

# Rebuild the old-schema fixture databases under tests/legacy/.
fixtures: $(STAMP)
	$(BIN)/python tests/legacy/make_fixtures.py

bench: $(STAMP)
	$(BIN)/python bench/store.py
	$(BIN)/python bench/migrate.py
	$(BIN)/python bench/timings.py
	$(BIN)/python bench/auth.py

# Mutation testing of the runtime-truth core (see [tool.mutmut] in pyproject.toml); not part of `make test`.
# Fails while a mutant survives that tests/mutation/EQUIVALENT.md does not list. Verdicts are cached in
# mutants/: a later run re-tests changed functions and the survivors; `rm -rf mutants` for a full run.
mutate: $(STAMP)
	$(BIN)/mutmut run --max-children 2
	$(BIN)/python tests/mutation/check.py --rerun

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache mutants
