from __future__ import annotations

from celery import shared_task

from curation.judges.models import AIJudgingRun
from curation.judges.services import ai_judging_run_execute

# One task call judges for about this long, then hands the rest of the run to a fresh call:
# a long LLM run never meets CELERY_TASK_TIME_LIMIT, and other tasks get the worker between.
TIME_BUDGET_S = 600


@shared_task(bind=True, acks_late=True, max_retries=60)
def ai_judgements_run_task(self, run_id: int) -> str | None:
    """Execute a queued AI judging run; the service records failures on the run row."""
    run = AIJudgingRun.objects.filter(pk=run_id).first()
    if run is None:  # deleted since it was queued
        return None
    run = ai_judging_run_execute(run=run, time_budget_s=TIME_BUDGET_S)
    if run.status == AIJudgingRun.Status.QUEUED:
        # Another worker holds the annotator (a redelivered task of an earlier run): later.
        raise self.retry(countdown=10)
    if run.status == AIJudgingRun.Status.RUNNING:
        # Out of time budget (or another worker is on it): go on in a fresh task.
        ai_judgements_run_task.apply_async((run.id,), countdown=5)
    return run.status
