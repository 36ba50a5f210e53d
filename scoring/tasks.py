from __future__ import annotations

from celery import shared_task

from annotation.models import Project
from scoring.services import embeddings_compute_project


# Routed to the "gpu" queue when SCORING_DEVICE=cuda (CELERY_TASK_ROUTES in settings).
@shared_task(acks_late=True)
def embeddings_compute_task(project_id: int) -> int:
    project = Project.objects.filter(pk=project_id).first()
    if project is None:  # deleted since the import
        return 0
    return embeddings_compute_project(project=project)
