from __future__ import annotations

from celery import shared_task

from annotation.models import ImportJob
from annotation.services.importing import import_job_execute


@shared_task(acks_late=True)
def import_job_execute_task(job_id: int) -> str | None:
    """Import a queued job; the lifecycle (core.runs) records failure, cancel and crash loops."""
    job = ImportJob.objects.filter(pk=job_id).first()
    if job is None:  # deleted since it was queued (its project went)
        return None
    return import_job_execute(job=job).status
