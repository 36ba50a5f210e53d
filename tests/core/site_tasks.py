"""A task that keeps its worker busy: loaded only by the worker the site-dashboard test
starts (`celery worker -I tests.core.site_tasks`)."""

from __future__ import annotations

import time

from celery import shared_task


@shared_task(name="tests.core.site_sleep")
def site_sleep_task(seconds: float) -> float:
    time.sleep(seconds)
    return seconds
