"""AI judging runs: an annotator over a set of comparisons (all of the project, those routed
to AI, or given ids), in batches, each batch's verdicts written in one transaction.

Idempotent per (annotator, comparison, model version): a comparison with an ok verdict of
that version is skipped; this run's own verdicts (when it goes on after a stop) count as
its work and are not asked again. A long run hands the worker back every TIME_BUDGET_S and
goes on in a fresh task (handle.defer())."""

from __future__ import annotations

import logging
import time

from django.db import transaction

from annotation.models import Comparison
from core.exceptions import ApplicationError
from core.runs import (
    OnProgress,
    RunHandle,
    run_cancel,
    run_enqueue,
    run_execute,
    run_failure_message,
)
from curation.judges.models import AIAnnotator, AIJudgingRun, AIVerdict
from curation.judges.services.kinds import annotator_model_version, judge_for
from curation.judges.services.writing import verdicts_write

logger = logging.getLogger(__name__)

BATCH = 32  # comparisons judged (and written in one transaction) per step
# A task judges for about this long, then hands the rest of the run to a fresh task: a long
# LLM run never meets CELERY_TASK_TIME_LIMIT, and other tasks get the worker in between.
TIME_BUDGET_S = 600


def _targets(run: AIJudgingRun) -> list[int]:
    qs = Comparison.objects.filter(project_id=run.project_id, excluded=False)
    if run.scope == AIJudgingRun.Scope.ROUTED:
        qs = qs.filter(route__in=[Comparison.Route.AI, Comparison.Route.BOTH])
    elif run.scope == AIJudgingRun.Scope.IDS:
        qs = qs.filter(id__in=run.comparison_ids or [])
    return list(qs.order_by("id").values_list("id", flat=True))


def ai_judging_run_create(
    *,
    annotator: AIAnnotator,
    scope: str = AIJudgingRun.Scope.ALL,
    comparison_ids: list[int] | None = None,
    created_by=None,
) -> AIJudgingRun:
    """A queued run of `annotator` (nothing enqueued: ai_judging_run_start does that,
    ai_judging_run_execute runs it here). Refused while another run of the annotator is
    queued or running."""
    if not annotator.is_active:
        raise ApplicationError(f"{annotator.source_name} is inactive; activate it first.")
    if scope not in AIJudgingRun.Scope.values:
        raise ApplicationError(f"Unknown scope '{scope}'.")
    if comparison_ids is not None:
        scope = AIJudgingRun.Scope.IDS
        comparison_ids = sorted({int(i) for i in comparison_ids})
        found = Comparison.objects.filter(
            project_id=annotator.project_id, id__in=comparison_ids
        ).count()
        if found != len(comparison_ids):
            raise ApplicationError(
                f"{len(comparison_ids) - found} of the comparison ids are not in this project."
            )
    elif scope == AIJudgingRun.Scope.IDS:
        raise ApplicationError("Give the comparison ids to judge.")
    model_version = annotator_model_version(annotator=annotator)
    with transaction.atomic():
        # Serialise creations for one annotator (its row as the lock).
        AIAnnotator.objects.select_for_update().filter(pk=annotator.pk).first()
        if AIJudgingRun.objects.filter(annotator=annotator).active().exists():
            raise ApplicationError(
                f"{annotator.source_name} already has a run queued or running; wait for it "
                "or cancel it."
            )
        run = AIJudgingRun.objects.create(
            project_id=annotator.project_id,
            annotator=annotator,
            scope=scope,
            comparison_ids=comparison_ids,
            model_version=model_version,
            created_by=created_by,
        )
    return run


def ai_judging_run_start(**kwargs) -> AIJudgingRun:
    """ai_judging_run_create, then enqueue it once committed."""
    run = ai_judging_run_create(**kwargs)
    run_enqueue(run)
    return run


def ai_judgements_run(
    *,
    annotator: AIAnnotator,
    comparison_ids: list[int] | None = None,
    scope: str = AIJudgingRun.Scope.ALL,
    on_progress: OnProgress | None = None,
) -> AIJudgingRun:
    """Judge in this process (no worker); returns the finished run."""
    run = ai_judging_run_create(annotator=annotator, scope=scope, comparison_ids=comparison_ids)
    return ai_judging_run_execute(run=run, on_progress=on_progress)


def ai_judging_run_cancel(*, run: AIJudgingRun) -> AIJudgingRun:
    """Stop a queued or running run at its next batch; what it wrote stays."""
    return run_cancel(run)


def ai_judging_run_execute(
    *,
    run: AIJudgingRun,
    on_progress: OnProgress | None = None,
    time_budget_s: float | None = None,
) -> AIJudgingRun:
    """Execute a queued run, or go on with one whose worker died (see core.runs.run_execute
    for the guarantees; the lock is the annotator's: one executing run per annotator). With
    `time_budget_s` it stops after the first batch that ends past the budget, and the run
    goes on in a fresh task. The API key never reaches the run's error."""
    annotator = AIAnnotator.objects.get(pk=run.annotator_id)

    def failure(exc: BaseException) -> dict:
        message = run_failure_message(exc)
        if annotator.api_key:
            message = message.replace(annotator.api_key, "[key]")
        return {"error": message}

    return run_execute(
        run, _judging_body(run, time_budget_s), on_progress=on_progress, on_failure=failure
    )


def _judging_body(run: AIJudgingRun, time_budget_s: float | None):
    def body(handle: RunHandle) -> None:
        started = time.monotonic()
        row = AIJudgingRun.objects.select_related("annotator", "annotator__project").get(pk=run.pk)
        annotator = row.annotator
        ids = _targets(row)
        todo, counts = _work_left(row, ids)
        done = len(ids) - len(todo)
        handle.progress(
            done,
            len(ids),
            phase="judging",
            skipped_count=counts["skipped"],
            ok_count=counts["ok"],
            failed_count=counts["failed"],
        )
        judge = judge_for(annotator, row.model_version, todo)
        for start in range(0, len(todo), BATCH):
            if time_budget_s is not None and start and time.monotonic() - started > time_budget_s:
                handle.defer()  # the rest in a fresh task
            handle.check()  # a cancelled run asks the judge nothing more
            results = judge(todo[start : start + BATCH])
            ok, failed = verdicts_write(row, annotator, results)
            counts["ok"] += ok
            counts["failed"] += failed
            done += len(results)
            handle.progress(done, len(ids), ok_count=counts["ok"], failed_count=counts["failed"])

    return body


def _work_left(run: AIJudgingRun, ids: list[int]) -> tuple[list[int], dict[str, int]]:
    """The comparisons still to judge, and the counts so far: verdicts of this version by
    earlier runs (ok ones are skipped) and by this run itself (its work when it goes on)."""
    skipped: set[int] = set()
    mine = {AIVerdict.Status.OK: set(), AIVerdict.Status.FAILED: set()}
    for cid, status, verdict_run in AIVerdict.objects.filter(
        annotator_id=run.annotator_id, model_version=run.model_version
    ).values_list("comparison_id", "status", "run_id"):
        if verdict_run == run.pk:
            mine[status].add(cid)
        elif status == AIVerdict.Status.OK:
            skipped.add(cid)
    wanted = set(ids)
    skipped &= wanted
    counts = {
        "skipped": len(skipped),
        "ok": len(mine[AIVerdict.Status.OK] & wanted),
        "failed": len(mine[AIVerdict.Status.FAILED] & wanted),
    }
    seen = skipped | mine[AIVerdict.Status.OK] | mine[AIVerdict.Status.FAILED]
    return [i for i in ids if i not in seen], counts
