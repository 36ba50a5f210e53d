# make run: everything for a zero-setup local run (SQLite, a broker in a SQLite file).
# make test: lint, then the whole suite on PostgreSQL + Redis with a real Celery worker.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: run test lint venv static chromium clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-nodeps.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt
	$(BIN)/pip install -q --no-deps -r requirements-nodeps.txt
	touch $@

venv: $(VENV)/.installed

static/vendor/htmx.min.js: package.json package-lock.json scripts/build-static.mjs
	npm ci --no-audit --no-fund --loglevel=error
	npm run --silent build

static: static/vendor/htmx.min.js

run: venv static
	$(BIN)/python manage.py migrate --no-input -v 0
	$(BIN)/python manage.py demo_setup
	scripts/run-local.sh

lint: venv
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

# Debian's chromium for the browser tests (Playwright drives it; it never downloads one).
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: venv static chromium lint
	DATABASE_URL=sqlite://:memory: $(BIN)/python manage.py makemigrations --check --dry-run -v 0
	$(BIN)/pytest $(PYTEST_ARGS)

clean:
	rm -rf .local staticfiles
