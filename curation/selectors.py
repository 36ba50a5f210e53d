"""Reads of the curation app: runs, the flag list of the curation page, the audit log and
the annotators' reliability."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db.models import Count, Exists, F, Max, OuterRef, Prefetch, Q, QuerySet
from django.http import Http404

from annotation.models import Comparison, Judgement, Membership, Project
from annotation.services.agreement import project_agreement
from curation.models import AnnotatorReliability, CurationAction, CurationRun, NoiseFlag


def curation_run_list(*, project: Project, limit: int = 5) -> list[CurationRun]:
    return list(CurationRun.objects.filter(project=project).order_by("-created_at", "-id")[:limit])


def curation_run_get(*, project: Project, run_id: int) -> CurationRun:
    run = CurationRun.objects.filter(project=project, pk=run_id).first()
    if run is None:
        raise Http404("No such run.")
    return run


def curation_run_latest(*, project: Project) -> CurationRun | None:
    """The newest finished run whose flags the page lists."""
    return (
        CurationRun.objects.filter(project=project, status=CurationRun.Status.SUCCEEDED)
        .order_by("-finished_at", "-id")
        .first()
    )


def flagged_comparison_list(
    *,
    project: Project,
    run: CurationRun | None,
    detector: str = "",
    source: str = "",
    state: str = "all",
    sort: str = "-score",
) -> QuerySet[Comparison]:
    """The comparisons `run` flagged (by `detector`, if given), each annotated with
    `top_score` (its highest score among those flags) and carrying `run_flags` (the run's
    flags on it, highest first) and `recent_actions` (newest first).

    source: only comparisons with a judgement of that source kind (human, import, ai).
    state: "open" (a flag not reviewed yet), "reviewed", or "all"."""
    if run is None:
        return Comparison.objects.none()
    flags = NoiseFlag.objects.filter(run=run, comparison=OuterRef("pk"))
    if detector:
        flags = flags.filter(detector=detector)
    qs = (
        Comparison.objects.filter(project=project)
        .filter(Exists(flags))
        .annotate(
            top_score=Max(
                "noise_flags__score",
                filter=_flag_filter(run, detector),
            )
        )
    )
    if source:
        qs = qs.filter(
            Exists(Judgement.objects.filter(comparison=OuterRef("pk"), source_kind=source))
        )
    if state == "open":
        qs = qs.filter(Exists(flags.filter(state=NoiseFlag.State.OPEN)))
    elif state == "reviewed":
        qs = qs.exclude(Exists(flags.filter(state=NoiseFlag.State.OPEN)))
    order = {"-score": (F("top_score").desc(), "id"), "score": ("top_score", "id")}.get(
        sort, ("id",)
    )
    run_flags = NoiseFlag.objects.filter(run=run).order_by("-score", "detector")
    return (
        qs.order_by(*order)
        .select_related("prompt", "candidate_a", "candidate_b")
        .prefetch_related(
            Prefetch("noise_flags", queryset=run_flags, to_attr="run_flags"),
            Prefetch(
                "curation_actions",
                queryset=CurationAction.objects.select_related("actor").order_by(
                    "-created_at", "-id"
                ),
                to_attr="recent_actions",
            ),
            # Sorted by kind: the page groups them ("2 human, 1 imported").
            Prefetch("judgements", queryset=Judgement.objects.order_by("source_kind", "id")),
        )
    )


def _flag_filter(run: CurationRun, detector: str) -> Q:
    q = Q(noise_flags__run=run)
    if detector:
        q &= Q(noise_flags__detector=detector)
    return q


def curation_action_list(*, project: Project, limit: int = 20) -> list[CurationAction]:
    """The newest actions on the project's pairs: the audit log."""
    return list(
        CurationAction.objects.filter(comparison__project=project)
        .select_related("actor", "undone_by", "comparison")
        .order_by("-created_at", "-id")[:limit]
    )


def curation_action_get(*, project: Project, action_id: int) -> CurationAction:
    action = CurationAction.objects.filter(comparison__project=project, pk=action_id).first()
    if action is None:
        raise Http404("No such action.")
    return action


@dataclass(frozen=True)
class AnnotatorReliabilityRow:
    user_id: int
    username: str
    role: str
    judgements: int  # human A/B judgements (what Dawid-Skene and MACE read)
    overlapping: int  # of them on comparisons someone else judged too
    dawid_skene: float | None  # estimated accuracy
    mace: float | None  # estimated competence
    weight: float | None  # Membership.reliability (the aggregation weight in use)
    agreement_alpha: float | None
    gold_judged: int
    gold_correct: int

    @property
    def gold_accuracy(self) -> float | None:
        return self.gold_correct / self.gold_judged if self.gold_judged else None


@dataclass(frozen=True)
class ReliabilityReport:
    annotators: list[AnnotatorReliabilityRow]
    overlap_comparisons: int  # comparisons with >= 2 human A/B judgements
    threshold: int
    computed_at: object  # when the stored estimates were made; None: never


def annotator_reliability_report(*, project: Project) -> ReliabilityReport:
    """Per annotator: the stored Dawid-Skene and MACE estimates (made on a worker by
    annotator_reliability_refresh), the weight in use, and agreement and gold accuracy
    (computed now: they are quick)."""
    from curation.services.reliability import MIN_OVERLAP_COMPARISONS

    stored = {r.user_id: r for r in AnnotatorReliability.objects.filter(project=project)}
    agreement = project_agreement(project=project)
    by_user = {a.user_id: a for a in agreement.annotators}
    members = {m.user_id: m for m in Membership.objects.filter(project=project)}
    user_ids = (
        set(stored)
        | set(by_user)
        | {uid for uid, m in members.items() if m.role == Membership.Role.ANNOTATOR}
    )
    names = dict(
        get_user_model()
        .objects.filter(id__in=user_ids)
        .values_list("id", get_user_model().USERNAME_FIELD)
    )
    rows = []
    for uid in user_ids:
        a, m, r = by_user.get(uid), members.get(uid), stored.get(uid)
        rows.append(
            AnnotatorReliabilityRow(
                user_id=uid,
                username=names.get(uid, ""),
                role=m.get_role_display() if m else "former member",
                judgements=r.judgements if r else 0,
                overlapping=r.overlapping if r else 0,
                dawid_skene=r.dawid_skene if r else None,
                mace=r.mace if r else None,
                weight=m.reliability if m else None,
                agreement_alpha=a.alpha if a else None,
                gold_judged=a.gold_judged if a else 0,
                gold_correct=a.gold_correct if a else 0,
            )
        )
    rows.sort(key=lambda row: row.username)
    overlap = (
        Judgement.objects.filter(
            comparison__project=project,
            comparison__is_gold=False,
            source_kind=Judgement.SourceKind.HUMAN,
            choice__in=["a", "b"],
        )
        .values("comparison_id")
        .annotate(n=Count("id"))
        .filter(n__gte=2)
        .count()
    )
    return ReliabilityReport(
        annotators=rows,
        overlap_comparisons=overlap,
        threshold=MIN_OVERLAP_COMPARISONS,
        computed_at=max((r.computed_at for r in stored.values()), default=None),
    )
