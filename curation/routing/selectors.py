"""Reads of routing: the budget, pairs per route, AI-human agreement, recent runs."""

from __future__ import annotations

from django.db.models import Count, Q
from django.http import Http404

from annotation.models import Comparison, Project
from curation.routing.models import RoutingRun
from curation.routing.services import Budget, routing_budget


def routing_overview(*, project: Project) -> dict:
    """Everything the routing page shows: `budget` (Budget), `routes` [(label, total,
    labelled, unlabelled)] over non-gold comparisons, `agreement` per AI annotator
    ({annotator, n, agree, rate} on comparisons with both a human and an AI label),
    `runs` (the latest 10) and `latest` (the newest run or None)."""
    budget: Budget = routing_budget(project=project)
    rows = (
        Comparison.objects.filter(project=project, is_gold=False)
        .values("route")
        .annotate(total=Count("id"), labelled=Count("id", filter=Q(label__isnull=False)))
    )
    by_route = {r["route"]: r for r in rows}
    routes = []
    for value, label in Comparison.Route.choices:
        r = by_route.get(value, {"total": 0, "labelled": 0})
        routes.append((label, r["total"], r["labelled"], r["total"] - r["labelled"]))
    runs = list(RoutingRun.objects.filter(project=project).order_by("-created_at", "-id")[:10])
    return {
        "budget": budget,
        "routes": routes,
        "agreement": routing_agreement(project=project),
        "runs": runs,
        "latest": runs[0] if runs else None,
    }


def routing_agreement(*, project: Project) -> list[dict]:
    """AI-human agreement per AI annotator of the project (the judges app's measure)."""
    from curation.judges.models import AIAnnotator
    from curation.judges.selectors import ai_human_agreement

    out = []
    for annotator in AIAnnotator.objects.filter(project=project).order_by("name"):
        out.append({"annotator": annotator, **ai_human_agreement(annotator=annotator)})
    return out


def routing_run_get(*, project: Project, run_id: int) -> RoutingRun:
    run = RoutingRun.objects.filter(project=project, pk=run_id).first()
    if run is None:
        raise Http404("No such routing run.")
    return run


def routing_decision_current(*, comparison_id: int):
    """The comparison's current routing decision (its latest), or None."""
    from curation.routing.models import RoutingDecision

    return (
        RoutingDecision.objects.filter(comparison_id=comparison_id)
        .order_by("-created_at", "-id")
        .first()
    )
