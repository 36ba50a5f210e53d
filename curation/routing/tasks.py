from __future__ import annotations

from celery import shared_task

from curation.routing.models import RoutingRun
from curation.routing.services.runs import routing_run_execute


@shared_task(acks_late=True)
def routing_run_execute_task(run_id: int) -> str | None:
    """Route; the lifecycle (core.runs) records failure, cancel and crash loops."""
    run = RoutingRun.objects.filter(pk=run_id).first()
    if run is None:  # deleted since it was queued
        return None
    return routing_run_execute(run=run).status
