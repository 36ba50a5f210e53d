"""The zero-setup run: SQLite, a broker in a SQLite file, debug on."""

from config.settings.base import *  # noqa: F403
from config.settings.base import LOCAL_DIR, env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="local-only-insecure-key-do-not-deploy")
LOCAL_DIR.mkdir(exist_ok=True)
# The queue index carries `route` as an INCLUDE column on PostgreSQL; SQLite just ignores it.
SILENCED_SYSTEM_CHECKS = ["models.W040"]
