#!/usr/bin/env bash
# The zero-setup run: a real Celery worker and the web server side by side.
# Ctrl-C (or either of them stopping) stops both.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
$BIN/celery -A config worker -Q cpu --concurrency 1 --loglevel INFO &
worker=$!
$BIN/python manage.py runserver 127.0.0.1:8000 &
web=$!
stop() {
    trap - INT TERM EXIT
    kill -TERM "$web" "$worker" 2>/dev/null
    wait "$web" "$worker" 2>/dev/null
}
trap stop INT TERM EXIT
echo "Open http://127.0.0.1:8000 (Ctrl-C stops the web server and the worker)"
wait -n "$web" "$worker"
