from __future__ import annotations

from celery import shared_task

from annotation.models import ImportJob
from annotation.services.importing import import_job_run


@shared_task(acks_late=True)
def import_job_run_task(job_id: int) -> str:
    job = ImportJob.objects.select_related("project").get(pk=job_id)
    return import_job_run(job=job).status
