from __future__ import annotations

from celery import shared_task

from curation.judges.models import AIJudgingRun
from curation.judges.services import ai_judging_run_execute


@shared_task(bind=True, acks_late=True, max_retries=60)
def ai_judgements_run_task(self, run_id: int) -> str | None:
    """Execute a queued AI judging run; the service records failures on the run row."""
    run = AIJudgingRun.objects.filter(pk=run_id).first()
    if run is None:  # deleted since it was queued
        return None
    run = ai_judging_run_execute(run=run)
    if run.status == AIJudgingRun.Status.QUEUED:
        # Another worker holds the annotator (a redelivered task of an earlier run): later.
        raise self.retry(countdown=10)
    return run.status
