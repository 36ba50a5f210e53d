from __future__ import annotations

from celery import shared_task

from annotation.models import Project
from curation.models import CurationRun
from curation.services.reliability import annotator_reliability_refresh
from curation.services.runs import curation_run_execute


@shared_task(acks_late=True)
def curation_run_execute_task(run_id: int) -> str | None:
    """Run the detectors of a queued run; the lifecycle (core.runs) records failure, cancel
    and crash loops, and leaves a finished or held run alone (a re-delivered task is harmless)."""
    run = CurationRun.objects.filter(pk=run_id).first()
    if run is None:  # deleted since it was queued
        return None
    return curation_run_execute(run=run).status


@shared_task(acks_late=True)
def annotator_reliability_refresh_task(project_id: int) -> dict | None:
    """Estimate the annotators' reliability and aggregate labels again. Running it twice
    computes the same estimates and changes nothing more."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return None
    result = annotator_reliability_refresh(project=project)
    return {"applied": result.applied, "relabelled": result.relabelled}
