"""The zero-setup run (make run): PostgreSQL and a broker on it, debug on.

scripts/run-local.sh starts an embedded PostgreSQL in .local/pgdata and exports its
DATABASE_URL (a DATABASE_URL already set wins, and then nothing is started); the Celery broker
is kombu's SQLAlchemy transport on that same database unless CELERY_BROKER_URL says otherwise.
"""

from pathlib import Path
from urllib.parse import quote, urlencode

from config.settings.base import *  # noqa: F403
from config.settings.base import DATABASES, LOCAL_DIR, env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="local-only-insecure-key-do-not-deploy")
# The run's files (the demo admin's password, media, beat's schedule) belong with its
# database: a test that runs the local setup on its own database points this elsewhere.
LOCAL_DIR = Path(env.str("DJANGO_LOCAL_DIR", default=str(LOCAL_DIR)))
MEDIA_ROOT = env.path("MEDIA_ROOT", default=str(LOCAL_DIR / "media"))
IMPORT_ROOT = env.path("IMPORT_ROOT", default=str(LOCAL_DIR / "imports"))
LOCAL_DIR.mkdir(exist_ok=True)


def broker_from_database(db: dict) -> str:
    """kombu's SQLAlchemy transport (psycopg 3) on the application's database, so the
    zero-setup run needs no Redis; kombu adds its tables (kombu_queue, kombu_message)."""
    auth = quote(db["USER"], safe="")
    if db["PASSWORD"]:
        auth += ":" + quote(db["PASSWORD"], safe="")
    # A Unix-socket directory travels as `?host=` (SQLAlchemy hands it on to psycopg).
    socket_dir = db.get("OPTIONS", {}).get("host") or ""
    if db["HOST"].startswith("/"):
        socket_dir = db["HOST"]
    host = "" if socket_dir else db["HOST"]
    port = f":{db['PORT']}" if db["PORT"] else ""
    query = "?" + urlencode({"host": socket_dir}) if socket_dir else ""
    return f"sqla+postgresql+psycopg://{auth}@{host}{port}/{quote(db['NAME'], safe='')}{query}"


CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=broker_from_database(DATABASES["default"]))
