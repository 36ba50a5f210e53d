"""Reads of routing: the settings, the budget (what counts against it: the module doc of
curation.routing.services), pairs per route, AI-human agreement, recent runs."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Exists, OuterRef, Q
from django.http import Http404
from django.utils import timezone

from annotation.models import Assignment, Comparison, Judgement, Project
from curation.routing import policies
from curation.routing.models import RoutingRun, RoutingSettings


def routing_settings_get(*, project: Project) -> RoutingSettings:
    """The project's routing settings; the defaults (unsaved: all to humans, no limit) when
    it has never set any."""
    found = RoutingSettings.objects.filter(project=project).first()
    return found or RoutingSettings(project=project)


def human_work(now) -> Q:
    """Comparisons with human work on them: a human judgement or a live lease."""
    return Q(
        Exists(
            Judgement.objects.filter(
                comparison=OuterRef("pk"), source_kind=Judgement.SourceKind.HUMAN
            )
        )
    ) | Q(
        Exists(
            Assignment.objects.filter(
                comparison=OuterRef("pk"), state=Assignment.State.LEASED, leased_until__gt=now
            )
        )
    )


@dataclass
class Budget:
    limit: int | None  # None: no limit
    total: int  # non-gold comparisons
    worked: int  # with a human judgement or a live lease (never re-routed)
    queued: int  # unlabelled, routed to humans, no human work yet
    # Routed to humans beyond the budget (e.g. imported since the last routing, which
    # land routed to humans by default): the next routing takes them back.
    over: int = 0

    @property
    def spent(self) -> int:
        return self.worked + self.queued

    @property
    def left(self) -> int | None:
        return None if self.limit is None else max(0, self.limit - self.spent)


def routing_budget(*, project: Project) -> Budget:
    now = timezone.now()
    base = Comparison.objects.filter(project=project, is_gold=False)
    total = base.count()
    worked = base.filter(human_work(now)).count()
    queued = (
        base.filter(
            label__isnull=True,
            status=Comparison.Status.PENDING,
            excluded=False,
            route__in=[Comparison.Route.HUMAN, Comparison.Route.BOTH],
        )
        .exclude(human_work(now))
        .count()
    )
    chosen = routing_settings_get(project=project)
    limit = policies.budget_limit(
        total=total, budget=chosen.human_budget, fraction=chosen.human_budget_fraction
    )
    over = 0 if limit is None else max(0, worked + queued - max(limit, worked))
    return Budget(limit=limit, total=total, worked=worked, queued=queued, over=over)


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
