#!/usr/bin/env bash
# The zero-setup run: an embedded PostgreSQL in .local/pgdata (unless DATABASE_URL is set),
# migrations and the demo data, then the web server, a real Celery worker and Celery beat
# side by side. Ctrl-C (or any of the three stopping) stops all of them, then the database.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
PGDATA_DIR=.local/pgdata
export DJANGO_SETTINGS_MODULE=config.settings.local
mkdir -p .local

pids=()
embedded=""
# Whether all of `pids` have exited within $1 seconds.
exited_within() {
    local deadline=$((SECONDS + $1)) pid alive
    while ((SECONDS < deadline)); do
        alive=""
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [[ -z $alive ]] && return 0
        sleep 0.2
    done
    return 1
}
stop() {
    # A second Ctrl-C must not cut this short: PostgreSQL is stopped last, whatever happens.
    trap '' INT TERM HUP
    trap - EXIT
    if ((${#pids[@]})); then
        kill -TERM "${pids[@]}" 2>/dev/null
        # The worker finishes its running task first (warm shutdown); after 10 s it is cut
        # short (cold shutdown: the task fails), after 20 s killed.
        if ! exited_within 10; then
            echo "Stopping the worker's running task" >&2
            kill -QUIT "${pids[@]}" 2>/dev/null
            exited_within 10 || kill -KILL "${pids[@]}" 2>/dev/null
        fi
        wait "${pids[@]}" 2>/dev/null
    fi
    if [[ -n $embedded ]]; then
        $BIN/python scripts/localdb.py stop "$PGDATA_DIR"
    fi
}
trap stop INT TERM HUP EXIT

if [[ -z ${DATABASE_URL:-} ]]; then
    embedded=1
    DATABASE_URL=$($BIN/python scripts/localdb.py start "$PGDATA_DIR") || exit 1
    export DATABASE_URL
    echo "PostgreSQL 18 (embedded) in $PGDATA_DIR: $DATABASE_URL"
fi
# The broker: CELERY_BROKER_URL if set, else kombu's SQLAlchemy transport on this database
# (config/settings/local.py derives it from DATABASE_URL).

$BIN/python manage.py migrate --no-input -v 0 || exit 1
$BIN/python manage.py demo_setup || exit 1

# --pool solo: one process, as in the tests. A prefork pool's cold shutdown can hang in
# billiard (seen with a task in flight), which would leave Ctrl-C waiting.
$BIN/celery -A config worker -Q cpu --pool solo --concurrency 1 --loglevel INFO &
pids+=($!)
$BIN/celery -A config beat --schedule .local/celerybeat-schedule --loglevel INFO &
pids+=($!)
$BIN/python manage.py runserver 127.0.0.1:8000 &
pids+=($!)
echo "Open http://127.0.0.1:8000 (Ctrl-C stops the web server, the worker and beat${embedded:+, then PostgreSQL})"
wait -n "${pids[@]}"
