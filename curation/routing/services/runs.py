"""Routing runs: from the routing page (Re-route now), the route_pairs command, or a new
active model version (routing.apps listens to scoring's `model_version_activated`).

A run routes in one transaction (routing.routes_assign) and, in the same transaction,
starts an AI judging run over the AI-routed comparisons that have no label yet, so that the
routes and the judging run that labels them commit together."""

from __future__ import annotations

import logging

from django.db import transaction

from annotation.models import Comparison, Project
from core.exceptions import ApplicationError
from core.runs import OnProgress, RunHandle, run_cancel, run_enqueue, run_execute
from curation.routing import policies
from curation.routing.models import RoutingRun
from curation.routing.selectors import routing_settings_get
from curation.routing.services.routing import _annotator_for, _scores_ensure, routes_assign

logger = logging.getLogger(__name__)


def routing_run_create(
    *,
    project: Project,
    policy: str | None = None,
    trigger: str = RoutingRun.Trigger.MANUAL,
    apply_ai_labels: bool = True,
    created_by=None,
) -> RoutingRun:
    """A queued routing run under `policy`, or under the project's policy as it is when the
    run executes (None: a run queued before the admin saves a new policy routes under the
    new one). Nothing enqueued: routing_run_start does that, routing_run_execute runs it
    here."""
    if policy is not None and policy not in policies.POLICIES:
        raise ApplicationError(
            f"Unknown routing policy '{policy}': use one of {', '.join(policies.POLICIES)}."
        )
    return RoutingRun.objects.create(
        project=project,
        policy=policy or "",
        trigger=trigger,
        apply_ai_labels=apply_ai_labels,
        created_by=created_by,
    )


def routing_run_start(
    *, project: Project, trigger: str = RoutingRun.Trigger.MANUAL, created_by=None
) -> RoutingRun:
    """A queued routing run of the project's policy, enqueued once committed. One queued run
    per project is enough: asking again while one waits returns that one (a queued run
    whose message was lost is sent again by the runs sweep)."""
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()
        waiting = RoutingRun.objects.filter(
            project=project, status=RoutingRun.Status.QUEUED
        ).first()
        if waiting is not None:
            return waiting
        run = routing_run_create(project=project, trigger=trigger, created_by=created_by)
        run_enqueue(run)
    return run


def routing_run_cancel(*, run: RoutingRun) -> RoutingRun:
    """Stop a queued or running run: routes it had not committed are not written."""
    return run_cancel(run)


def routing_run_execute(
    *,
    run: RoutingRun,
    on_progress: OnProgress | None = None,
    annotator=None,
    seed: int = 0,
    judge_here: bool = False,
) -> RoutingRun:
    """Route (see core.runs.run_execute for the guarantees). `annotator`: the AI annotator
    whose verdicts the policy reads and who labels the AI-routed pairs (default: the
    project's first active one). The judging run it starts is enqueued for a worker, or,
    with `judge_here`, executed in this process once the routing has committed."""
    run = run_execute(
        run, _routing_body(run, annotator, seed, enqueue=not judge_here), on_progress=on_progress
    )
    if judge_here and run.ai_judging_run_id and run.status == RoutingRun.Status.SUCCEEDED:
        from curation.judges.services.runs import ai_judging_run_execute

        ai_judging_run_execute(run=run.ai_judging_run, on_progress=on_progress)
    return run


def pairs_route(
    *,
    project: Project,
    policy: str | None = None,
    annotator=None,
    apply_ai_labels: bool = True,
    seed: int = 0,
    on_progress: OnProgress | None = None,
) -> RoutingRun:
    """Route here and now (the route_pairs command, the tests): a routing run executed in
    this process, the AI labels it asks for judged here too. Returns the finished run."""
    run = routing_run_create(
        project=project,
        policy=policy,
        trigger=RoutingRun.Trigger.COMMAND,
        apply_ai_labels=apply_ai_labels,
    )
    return routing_run_execute(
        run=run, on_progress=on_progress, annotator=annotator, seed=seed, judge_here=True
    )


def _routing_body(run: RoutingRun, annotator, seed: int, *, enqueue: bool):
    def body(handle: RunHandle) -> None:
        project = Project.objects.get(pk=run.project_id)
        policy = run.policy or routing_settings_get(project=project).policy
        handle.progress(0, 0, phase="scoring", policy=policy)
        _scores_ensure(project)
        with transaction.atomic():
            routed = routes_assign(
                project=project,
                policy=policy,
                run=run,
                annotator=annotator,
                seed=seed,
                handle=handle,
            )
            judging, note = None, ""
            if run.apply_ai_labels:
                judging, note = _ai_labels_start(project, annotator, run, enqueue=enqueue)
                routed.counts["ai_to_label"] = judging.progress_total if judging else 0
            handle.complete(
                policy_used=routed.policy_used,
                budget_limit=routed.budget_limit,
                model_version=routed.model_version,
                counts=routed.counts,
                message=" ".join(m for m in (routed.message, note) if m),
                ai_judging_run=judging,
            )

    return body


def _ai_labels_start(project: Project, annotator, run: RoutingRun, *, enqueue: bool):
    """A judging run of the AI annotator over the AI-routed comparisons without a label
    (enqueued once committed, or left for the caller to execute); (run or None, a note)."""
    from curation.judges.models import AIJudgingRun
    from curation.judges.services.runs import ai_judging_run_create

    ai_ids = list(
        Comparison.objects.filter(
            project=project,
            route=Comparison.Route.AI,
            label__isnull=True,
            status=Comparison.Status.PENDING,
            is_gold=False,
            excluded=False,
        )
        .order_by("id")
        .values_list("id", flat=True)
    )
    if not ai_ids:
        return None, ""
    annotator = _annotator_for(project, annotator)
    if annotator is None:
        return None, (
            f"{len(ai_ids):,} AI-routed comparisons wait for an AI annotator: add an active "
            "one to the project and re-route."
        )
    try:
        judging = ai_judging_run_create(
            annotator=annotator, comparison_ids=ai_ids, created_by=run.created_by
        )
    except ApplicationError as exc:
        return None, f"AI labels not started: {exc.message}"
    # Its total is known up front: the routing page shows it before the run starts.
    AIJudgingRun.objects.filter(pk=judging.pk).update(progress_total=len(ai_ids))
    judging.progress_total = len(ai_ids)
    if enqueue:
        run_enqueue(judging)
    note = (
        f"AI judging run #{judging.pk} of {annotator.source_name} labels the {len(ai_ids):,} "
        "AI-routed comparisons without a label."
    )
    return judging, note
