"""Settings shared by every environment. Everything comes from the environment (django-environ)."""

from __future__ import annotations

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent
LOCAL_DIR = BASE_DIR / ".local"  # state of the zero-setup run (embedded PostgreSQL, media)

env = environ.Env()

DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "template_partials",
    "core",
    "annotation",
    "scoring",
    "curation",
    "curation.judges",
    "curation.routing",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def database_from_env(default: str | None = None) -> dict:
    """DATABASE_URL as Django's settings. PostgreSQL is the only database: the queue's
    SKIP LOCKED, advisory locks, COPY and array parameters are the code everyone runs, so
    any other engine is refused here, at start-up, with a clear message."""
    db = env.db("DATABASE_URL", default=default) if default else env.db("DATABASE_URL")
    if db["ENGINE"] not in (
        "django.db.backends.postgresql",
        "django.db.backends.postgresql_psycopg2",
    ):
        raise ImproperlyConfigured(
            f"DATABASE_URL names {db['ENGINE'].rsplit('.', 1)[-1]}, but this application runs on "
            "PostgreSQL only: give a postgres:// URL, or leave DATABASE_URL unset under "
            "`make run` to use the embedded PostgreSQL in .local/."
        )
    db["ENGINE"] = "django.db.backends.postgresql"
    # Keep connections between requests: a new PostgreSQL connection per request (a new
    # backend process) costs more than most of our requests.
    db["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
    db["CONN_HEALTH_CHECKS"] = True
    return db


DATABASES = {"default": database_from_env("postgres://postgres@127.0.0.1:5432/prefdata")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# A process-local cache by default; CACHE_URL=redis://... shares it between processes and
# machines. Sessions are read from it first, the database only on a miss.
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "annotation:home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))
STATICFILES_DIRS = [BASE_DIR / "static"]
# Media (candidate and prompt images and audio) are private: MEDIA_ROOT is never served under
# a public URL; annotation.views.media serves each file to members of a project that uses it.
MEDIA_URL = "media/"
MEDIA_ROOT = env.path("MEDIA_ROOT", default=str(LOCAL_DIR / "media"))
# Uploaded import files wait here for their job, outside MEDIA_ROOT, and go once it finishes.
IMPORT_ROOT = env.path("IMPORT_ROOT", default=str(LOCAL_DIR / "imports"))
# How the media view hands a file over: "django" streams it (with Range); behind nginx
# "x-accel-redirect" (MEDIA_ACCEL_PREFIX is the internal location that maps to MEDIA_ROOT),
# behind Apache/lighttpd "x-sendfile" (the server reads MEDIA_ROOT itself).
MEDIA_SERVE = env.str("MEDIA_SERVE", default="django")
if MEDIA_SERVE not in ("django", "x-accel-redirect", "x-sendfile"):
    raise ImproperlyConfigured(
        f"MEDIA_SERVE={MEDIA_SERVE!r}: use django, x-accel-redirect or x-sendfile"
    )
MEDIA_ACCEL_PREFIX = env.str("MEDIA_ACCEL_PREFIX", default="/protected-media/")
# What an imported file may be (annotation/media.py checks them before anything is written).
MEDIA_IMAGE_MAX_BYTES = env.int("MEDIA_IMAGE_MAX_BYTES", default=20 * 1024**2)
MEDIA_IMAGE_MAX_SIDE = env.int("MEDIA_IMAGE_MAX_SIDE", default=8192)
# Pillow's decompression-bomb guard (Image.MAX_IMAGE_PIXELS) is set to this.
MEDIA_IMAGE_MAX_PIXELS = env.int("MEDIA_IMAGE_MAX_PIXELS", default=40_000_000)
MEDIA_AUDIO_MAX_BYTES = env.int("MEDIA_AUDIO_MAX_BYTES", default=50 * 1024**2)
MEDIA_AUDIO_MAX_SECONDS = env.float("MEDIA_AUDIO_MAX_SECONDS", default=600.0)
# A media archive (.zip): the sum of its members' uncompressed sizes, and the largest
# uncompressed/compressed ratio of a member (zip-bomb guards), checked before extraction.
IMPORT_ARCHIVE_MAX_BYTES = env.int("IMPORT_ARCHIVE_MAX_BYTES", default=8 * 1024**3)
IMPORT_ARCHIVE_MAX_RATIO = env.int("IMPORT_ARCHIVE_MAX_RATIO", default=200)

# Uploads: an import file can be large; Django streams it to a temporary file past this size.
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
IMPORT_MAX_FILE_BYTES = env.int("IMPORT_MAX_FILE_BYTES", default=2 * 1024**3)
IMPORT_MAX_LINE_BYTES = env.int("IMPORT_MAX_LINE_BYTES", default=1024 * 1024)

# Celery: JSON only, acks late with prefetch 1 for long jobs, time limits set.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="redis://127.0.0.1:6379/0")
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=None)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
# A task whose worker process died goes back to the queue instead of being acked.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=2 * 3600)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=2 * 3600 - 60)
CELERY_TASK_DEFAULT_QUEUE = "cpu"
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# Runs (core/runs.py): a worker executing a run writes a heartbeat every RUN_HEARTBEAT_S;
# the sweep (Celery beat, every RUN_SWEEP_INTERVAL_S) fails a running run whose heartbeat is
# older than RUN_STALE_AFTER_S and whose lock nobody holds (its worker is gone), and sends a
# queued run's task again after RUN_QUEUED_RESEND_S (its message may be lost). A run
# delivered more than RUN_MAX_ATTEMPTS times (its task kills the worker) fails for good.
RUN_HEARTBEAT_S = env.float("RUN_HEARTBEAT_S", default=15.0)
RUN_STALE_AFTER_S = env.int("RUN_STALE_AFTER_S", default=120)
RUN_SWEEP_INTERVAL_S = env.float("RUN_SWEEP_INTERVAL_S", default=60.0)
RUN_QUEUED_RESEND_S = env.int("RUN_QUEUED_RESEND_S", default=600)
RUN_MAX_ATTEMPTS = env.int("RUN_MAX_ATTEMPTS", default=3)
if not 0 < RUN_HEARTBEAT_S < RUN_STALE_AFTER_S:
    raise ImproperlyConfigured("RUN_HEARTBEAT_S must be positive and below RUN_STALE_AFTER_S")
if RUN_MAX_ATTEMPTS < 1:
    raise ImproperlyConfigured("RUN_MAX_ATTEMPTS must be at least 1")
# Workers (core/workers.py): each worker process writes a heartbeat row (its queues and what
# it is running) every WORKER_HEARTBEAT_S from a thread of its own, so that a solo-pool
# worker busy with a long task still reports; the site dashboard shows a worker gone once
# its heartbeat is older than WORKER_GONE_AFTER_S, and lists gone ones for
# WORKER_GONE_LISTED_S.
WORKER_HEARTBEAT_S = env.float("WORKER_HEARTBEAT_S", default=5.0)
WORKER_GONE_AFTER_S = env.float("WORKER_GONE_AFTER_S", default=30.0)
WORKER_GONE_LISTED_S = env.int("WORKER_GONE_LISTED_S", default=3600)
if not 0 < WORKER_HEARTBEAT_S < WORKER_GONE_AFTER_S <= 50:
    raise ImproperlyConfigured(
        "WORKER_HEARTBEAT_S must be positive and below WORKER_GONE_AFTER_S, which may be at "
        "most 50 (a worker that goes away shows as gone within a minute)"
    )
CELERY_BEAT_SCHEDULE = {
    "runs-sweep": {"task": "core.tasks.runs_sweep_task", "schedule": RUN_SWEEP_INTERVAL_S},
}

# Where the encoders and reward models run: "cuda" sends scoring tasks to the "gpu" queue.
SCORING_DEVICE = env.str("SCORING_DEVICE", default="cpu")
if SCORING_DEVICE not in ("cpu", "cuda"):
    raise ImproperlyConfigured(f"SCORING_DEVICE must be 'cpu' or 'cuda', not '{SCORING_DEVICE}'")
# Without a GPU worker, a transformer run trains on a CPU worker only up to this many pairs.
SCORING_TRANSFORMER_CPU_MAX_PAIRS = env.int("SCORING_TRANSFORMER_CPU_MAX_PAIRS", default=2000)
# Automatic training waits this long after a label before it counts (a burst makes one run).
SCORING_AUTO_TRAIN_DEBOUNCE_S = env.int("SCORING_AUTO_TRAIN_DEBOUNCE_S", default=60)
CELERY_TASK_ROUTES = {
    "scoring.tasks.embeddings_compute_task": {
        "queue": "gpu" if SCORING_DEVICE == "cuda" else "cpu"
    },
    # Heads on embeddings train and score on CPU workers whatever the embedding device.
    "scoring.tasks.training_run_execute_task": {"queue": "cpu"},
    "scoring.tasks.scores_compute_task": {"queue": "cpu"},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
