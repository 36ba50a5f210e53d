"""Advisory locks: one worker at a time on a job, released by PostgreSQL if it dies."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection


@contextmanager
def advisory_lock_try(kind: int, key: int) -> Iterator[bool]:
    """Hold PostgreSQL's session advisory lock (kind, key) if it is free; yields whether it
    was taken. The lock outlives transactions and goes with the connection, so a worker
    that dies mid-job frees it. SQLite (the single local worker) needs none: True."""
    if connection.vendor != "postgresql":
        yield True
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [kind, key])
        (locked,) = cursor.fetchone()
    try:
        yield locked
    finally:
        if locked:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [kind, key])
