# Askgate. `make run` starts the server, `make test` runs the whole suite. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python

.PHONY: run test e2e bench quality lint format clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/activate
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/activate
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(VENV)/.runtime $@

run: $(VENV)/.runtime
	$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

test: $(VENV)/.dev
	$(PY) -m pytest $(PYTEST_ARGS)

e2e: $(VENV)/.dev
	$(PY) -m pytest -m e2e tests/e2e $(PYTEST_ARGS)

bench: $(VENV)/.dev
	$(PY) bench/run.py

quality: $(VENV)/.dev
	$(PY) bench/quality.py $(QUALITY_ARGS)

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
