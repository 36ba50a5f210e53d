from __future__ import annotations

from celery import shared_task

from annotation.models import Project
from scoring.models import ModelVersion, TrainingRun
from scoring.services.embeddings import embeddings_compute_project
from scoring.services.scores import scores_compute
from scoring.services.training import training_auto_start, training_run_execute


# Routed to the "gpu" queue when SCORING_DEVICE=cuda (CELERY_TASK_ROUTES in settings).
@shared_task(acks_late=True)
def embeddings_compute_task(project_id: int) -> int:
    project = Project.objects.filter(pk=project_id).first()
    if project is None:  # deleted since the import
        return 0
    return embeddings_compute_project(project=project)


@shared_task(acks_late=True)
def training_run_execute_task(run_id: int) -> str | None:
    """Train a queued run; the lifecycle (core.runs) records failure, cancel and crash loops."""
    run = TrainingRun.objects.filter(pk=run_id).first()
    if run is None:  # deleted since it was queued
        return None
    return training_run_execute(run=run).status


@shared_task(acks_late=True)
def scores_compute_task(version_id: int) -> int:
    version = ModelVersion.objects.filter(pk=version_id).first()
    if version is None:  # deleted since
        return 0
    return scores_compute(version=version)


@shared_task(acks_late=True)
def training_auto_start_task(project_id: int) -> int | None:
    """Start a run if the project has enough new labels (see training_auto_start)."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return None
    run = training_auto_start(project=project)
    return run.pk if run else None
