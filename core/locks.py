"""PostgreSQL advisory locks: one enum of lock classes, so that two uses never share one.

A lock is (class, key): the class says what is locked (an import job, a training run, the
automatic-training decision of a project, ...), the key which one (usually a row id).
Session locks outlive transactions and go with the connection, so a worker that dies
mid-job frees them at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum, unique

from django.db import connection


@unique  # two classes with one number would lock each other out
class Lock(IntEnum):
    IMPORT_JOB = 0x1D0B
    TRAINING_RUN = 0x5C0E
    AUTO_TRAIN = 0x5C0F  # the automatic-training decision of a project
    CURATION_RUN = 0xC0A7
    AI_JUDGES = 0x7A1D  # one executing judging run per AI annotator
    ROUTING_RUN = 0x7A20


@contextmanager
def advisory_lock_try(lock: Lock, key: int) -> Iterator[bool]:
    """Hold the session advisory lock (lock, key) if it is free; yields whether it was taken."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [int(lock), key])
        (locked,) = cursor.fetchone()
    try:
        yield locked
    finally:
        if locked:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [int(lock), key])


def advisory_lock_held(lock: Lock, key: int) -> bool:
    """Whether some session holds (lock, key) now: a worker is executing that job. Asked by
    taking the lock and giving it straight back."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [int(lock), key])
        (free,) = cursor.fetchone()
        if free:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [int(lock), key])
    return not free
