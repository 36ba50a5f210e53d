from __future__ import annotations

from celery import shared_task

from curation.judges.models import AIJudgingRun
from curation.judges.services.runs import TIME_BUDGET_S, ai_judging_run_execute


@shared_task(acks_late=True)
def ai_judging_run_execute_task(run_id: int) -> str | None:
    """Judge for up to TIME_BUDGET_S; the run then goes on in a fresh task (core.runs)."""
    run = AIJudgingRun.objects.filter(pk=run_id).first()
    if run is None:  # deleted since it was queued
        return None
    return ai_judging_run_execute(run=run, time_budget_s=TIME_BUDGET_S).status
