#!/usr/bin/env bash
# The zero-setup run: a real Celery worker in the background, the web server in front.
# Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
$BIN/celery -A config worker -Q cpu --concurrency 1 --loglevel INFO &
worker=$!
trap 'kill $worker 2>/dev/null; wait $worker 2>/dev/null' EXIT INT TERM
echo "Open http://127.0.0.1:8000 (Ctrl-C stops the web server and the worker)"
$BIN/python manage.py runserver 127.0.0.1:8000
