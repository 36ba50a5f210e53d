# make run: everything for a zero-setup local run (an embedded PostgreSQL from a pip wheel,
# the Celery broker on it; scripts/run-local.sh).
# make lint: ruff, import-linter's layering contracts, then ESLint (npm run lint).
# make test: lint, then the whole suite on PostgreSQL + Redis with a real Celery worker.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: run test lint venv static debian clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-nodeps.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt
	$(BIN)/pip install -q --no-deps -r requirements-nodeps.txt
	touch $@

venv: $(VENV)/.installed

# node_modules from the lock file: the front-end libraries and ESLint.
node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

static/vendor/htmx.min.js static/vendor/wavesurfer.min.js &: node_modules/.package-lock.json scripts/build-static.mjs
	npm run --silent build

static: static/vendor/htmx.min.js static/vendor/wavesurfer.min.js

# The script starts the database first, then migrates and loads the demo data.
run: venv static
	scripts/run-local.sh

lint: venv node_modules/.package-lock.json
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	npm run --silent lint

# Debian's chromium for the browser tests (Playwright drives it; it never downloads one), and
# espeak-ng, the speech of the simulated audio preference set (bench/media_data.py).
debian:
	@command -v chromium >/dev/null && command -v espeak-ng >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium espeak-ng >/dev/null; }

test: venv static debian lint
	DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/prefdata} \
		$(BIN)/python manage.py makemigrations --check --dry-run -v 0
	$(BIN)/pytest $(PYTEST_ARGS)

# A server left running in .local/pgdata is stopped before its files go.
clean:
	if [ -d .local/pgdata ] && [ -x $(BIN)/python ]; then $(BIN)/python scripts/localdb.py stop .local/pgdata; fi
	rm -rf .local staticfiles
