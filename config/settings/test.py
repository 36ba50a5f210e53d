"""Tests: PostgreSQL and Redis, the real parts. Only speed-ups here."""

import tempfile

from config.settings.base import *  # noqa: F403
from config.settings.base import DATABASES, database_from_env, env

SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="test-only-insecure-key")
DATABASES["default"] = database_from_env("postgres://postgres@127.0.0.1:5432/prefdata")
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="redis://127.0.0.1:6379/15")
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
ALLOWED_HOSTS = ["*"]
# Uploaded files: a fresh folder per run, shared with the worker the tests start.
MEDIA_ROOT = env.str("MEDIA_ROOT", default="") or tempfile.mkdtemp(prefix="prefdata-media-")
IMPORT_ROOT = env.str("IMPORT_ROOT", default="") or tempfile.mkdtemp(prefix="prefdata-imports-")
# Runs: beat only runs in the tests that start it (the worker-kill tests); there a lost run
# is found within seconds, not minutes.
RUN_HEARTBEAT_S = env.float("RUN_HEARTBEAT_S", default=1.0)
RUN_STALE_AFTER_S = env.int("RUN_STALE_AFTER_S", default=6)
RUN_SWEEP_INTERVAL_S = env.float("RUN_SWEEP_INTERVAL_S", default=2.0)
CELERY_BEAT_SCHEDULE = {
    "runs-sweep": {"task": "core.tasks.runs_sweep_task", "schedule": RUN_SWEEP_INTERVAL_S},
}
# Workers: a heartbeat every second, gone after five missed.
WORKER_HEARTBEAT_S = env.float("WORKER_HEARTBEAT_S", default=1.0)
WORKER_GONE_AFTER_S = env.float("WORKER_GONE_AFTER_S", default=5.0)
