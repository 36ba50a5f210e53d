"""Fixtures shared by every test: the real services, named personas, a real Celery worker."""

from __future__ import annotations

import gzip
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from django.conf import settings

from annotation.models import Membership
from tests.factories import MembershipFactory, ProjectFactory, UserFactory

# Models load from their packages, never from the hub; the worker subprocess inherits these.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
HH_SAMPLE = ROOT.parent / "shared" / "data" / "hh-rlhf-harmless-sample.jsonl.gz"


def _require(url: str, what: str, default_port: int) -> None:
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or default_port
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        pytest.exit(f"{what} is not reachable at {host}:{port} ({exc}); the tests need it", 3)


def pytest_sessionstart(session: pytest.Session) -> None:
    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.postgresql":
        pytest.exit("the tests run on PostgreSQL: set DATABASE_URL to postgres://...", 3)
    _require(f"postgres://{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}", "PostgreSQL", 5432)
    _require(settings.CELERY_BROKER_URL, "The Celery broker (Redis)", 6379)


@pytest.fixture
def hh_sample() -> Path:
    if not HH_SAMPLE.is_file():
        pytest.fail(f"the real-data tests need {HH_SAMPLE} (../shared/data beside the checkout)")
    return HH_SAMPLE


@pytest.fixture
def hh_rows(hh_sample: Path) -> list[str]:
    with gzip.open(hh_sample, "rt", encoding="utf-8") as fh:
        return fh.read().splitlines()


# ---------------------------------------------------------------- personas


@pytest.fixture
def project(db):
    return ProjectFactory(slug="alpha", name="Alpha")


@pytest.fixture
def other_project(db):
    return ProjectFactory(slug="beta", name="Beta")


def _member(project, username: str, role: str):
    return MembershipFactory(project=project, user=UserFactory(username=username), role=role).user


@pytest.fixture
def admin(project):
    return _member(project, "alice-admin", Membership.Role.ADMIN)


@pytest.fixture
def reviewer(project):
    return _member(project, "rita-reviewer", Membership.Role.REVIEWER)


@pytest.fixture
def annotator(project):
    return _member(project, "anna-annotator", Membership.Role.ANNOTATOR)


@pytest.fixture
def outsider(other_project):
    """An admin of another project: must see nothing of `project`."""
    return _member(other_project, "oscar-outsider", Membership.Role.ADMIN)


# ---------------------------------------------------------------- a real Celery worker


@pytest.fixture
def celery_worker(_celery_worker_process: str) -> Iterator[str]:
    """The session's worker; after the test, waits until it is idle, so that a task the
    test set off (scoring after training, re-routing) never races the database flush."""
    from config.celery_app import app

    yield _celery_worker_process
    inspect = app.control.inspect(destination=[_celery_worker_process], timeout=1.0)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        # A solo worker answers from the loop that runs its task: no reply means busy, not
        # idle (an embedding task set off by one test would otherwise run into the next).
        active = (inspect.active() or {}).get(_celery_worker_process)
        reserved = (inspect.reserved() or {}).get(_celery_worker_process)
        if active == [] and reserved == []:
            return
        time.sleep(0.5)


def worker_env() -> dict[str, str]:
    """The environment of a worker or beat process the tests start: the test settings,
    database, broker and media folder."""
    db = settings.DATABASES["default"]
    database_url = (
        f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{db['NAME']}"
    )
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": database_url,
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "IMPORT_ROOT": str(settings.IMPORT_ROOT),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
    }


def worker_start(
    *,
    queues: str,
    log_path: Path,
    pool: str = "solo",
    name: str | None = None,
    extra_args: tuple[str, ...] = (),
) -> tuple[subprocess.Popen, str]:
    """Start a real `celery worker` process on the test database and broker consuming
    `queues`; return it and its node name once it answers a ping (fails the test if not)."""
    from config.celery_app import app

    name = name or f"test-{uuid.uuid4().hex[:8]}@localhost"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queues,
             "--pool", pool, "--concurrency", "1", "-n", name, "--without-gossip",
             "--without-mingle", "--loglevel", "INFO", *extra_args],
            cwd=ROOT, env=worker_env(), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while not app.control.ping(destination=[name], timeout=0.5):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the Celery worker did not start:\n{log_path.read_text()[-4000:]}")
    return proc, name


def worker_stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def _celery_worker_process(django_db_setup, tmp_path_factory) -> Iterator[str]:
    """A real `celery worker` process on the test database and the Redis broker."""
    import redis

    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    proc, name = worker_start(
        queues="cpu", log_path=tmp_path_factory.mktemp("worker") / "worker.log"
    )
    yield name
    worker_stop(proc)
