"""A task whose run kills its own worker process on every delivery: what an out-of-memory
import or a hostile remote judge does. Loaded only by the worker of the crash-loop test
(`celery worker -I tests.core.crash_tasks`); the lifecycle it runs is the product's own."""

from __future__ import annotations

import os
import signal

from celery import shared_task

from annotation.models import ImportJob
from core.runs import run_execute


@shared_task(name="tests.core.crash_run", acks_late=True)
def crash_run_task(job_id: int) -> str:
    job = ImportJob.objects.get(pk=job_id)
    return run_execute(job, lambda handle: os.kill(os.getpid(), signal.SIGKILL)).status
