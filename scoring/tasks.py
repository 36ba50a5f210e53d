from __future__ import annotations

from celery import shared_task

from annotation.models import Project
from scoring.models import ModelVersion
from scoring.services import (
    embeddings_compute_project,
    model_version_auto_train,
    model_version_train,
    scores_compute,
)


# Routed to the "gpu" queue when SCORING_DEVICE=cuda (CELERY_TASK_ROUTES in settings).
@shared_task(acks_late=True)
def embeddings_compute_task(project_id: int) -> int:
    project = Project.objects.filter(pk=project_id).first()
    if project is None:  # deleted since the import
        return 0
    return embeddings_compute_project(project=project)


@shared_task(acks_late=True)
def model_version_train_task(version_id: int) -> str | None:
    """Train a queued run; the service marks it failed (with the reason) on error."""
    version = ModelVersion.objects.filter(pk=version_id).first()
    if version is None:  # deleted since it was queued
        return None
    return model_version_train(version=version).status


@shared_task(acks_late=True)
def scores_compute_task(version_id: int) -> int:
    version = ModelVersion.objects.filter(
        pk=version_id, status=ModelVersion.Status.SUCCEEDED
    ).first()
    if version is None:  # deleted, or not (yet) trained
        return 0
    return scores_compute(version=version)


@shared_task(acks_late=True)
def model_version_auto_train_task(project_id: int) -> int | None:
    """Start a run if the project has enough new labels (see model_version_auto_train)."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return None
    version = model_version_auto_train(project=project)
    return version.pk if version else None
