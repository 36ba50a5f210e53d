from __future__ import annotations

from celery import shared_task

from curation.routing.models import RoutingRun
from curation.routing.services import routing_run_execute


@shared_task(acks_late=True)
def routing_run_task(run_id: int) -> str | None:
    """Execute a queued routing run; the service marks it failed (with the reason) on error."""
    run = RoutingRun.objects.filter(pk=run_id).first()
    if run is None:  # deleted since it was queued
        return None
    return routing_run_execute(run=run).status
