"""Reads of the AI annotators: their verdicts, runs, failures and agreement with humans."""

from __future__ import annotations

from collections import Counter, defaultdict

from django.db.models import Count, Q, QuerySet
from django.http import Http404

from annotation.models import Choice, Judgement, Project
from curation.judges.models import AIAnnotator, AIJudgingRun, AIVerdict


def ai_verdicts_for(*, project: Project, annotator: AIAnnotator | None = None) -> QuerySet:
    """The current ok verdicts of the project's annotators (or of `annotator`), one per
    (annotator, comparison), as dicts: comparison_id, annotator_id, model_version, p_a,
    p_a_ab, p_a_ba, spread, orders_agree, choice ("a"/"b"), confidence (0..1)."""
    qs = AIVerdict.objects.filter(
        annotator__project=project, status=AIVerdict.Status.OK, is_current=True
    )
    if annotator is not None:
        qs = qs.filter(annotator=annotator)
    return qs.order_by("comparison_id", "annotator_id").values(
        "comparison_id",
        "annotator_id",
        "model_version",
        "p_a",
        "p_a_ab",
        "p_a_ba",
        "spread",
        "orders_agree",
        "choice",
        "confidence",
    )


def annotator_list(*, project: Project) -> list[AIAnnotator]:
    """The project's annotators by name, each with ok_verdicts, failed_verdicts (current
    model versions and older ones alike) and `agreement` (see ai_human_agreement)."""
    annotators = list(
        AIAnnotator.objects.filter(project=project)
        .annotate(
            ok_verdicts=Count("verdicts", filter=Q(verdicts__status=AIVerdict.Status.OK)),
            failed_verdicts=Count("verdicts", filter=Q(verdicts__status=AIVerdict.Status.FAILED)),
        )
        .order_by("name")
    )
    for annotator in annotators:
        annotator.agreement = ai_human_agreement(annotator=annotator)
    return annotators


def annotator_get(*, project: Project, annotator_id: int) -> AIAnnotator:
    annotator = AIAnnotator.objects.filter(project=project, pk=annotator_id).first()
    if annotator is None:
        raise Http404("No such AI annotator.")
    return annotator


def annotator_get_by_name(*, project: Project, name: str) -> AIAnnotator | None:
    return AIAnnotator.objects.filter(project=project, name=name).first()


def run_list(*, project: Project, limit: int = 10) -> QuerySet[AIJudgingRun]:
    return (
        AIJudgingRun.objects.filter(project=project)
        .select_related("annotator")
        .order_by("-created_at", "-id")[:limit]
    )


def run_get(*, project: Project, run_id: int) -> AIJudgingRun:
    run = (
        AIJudgingRun.objects.filter(project=project, pk=run_id).select_related("annotator").first()
    )
    if run is None:
        raise Http404("No such run.")
    return run


def verdict_failures(*, project: Project, limit: int = 20) -> QuerySet[AIVerdict]:
    """The latest failed verdicts of the project's annotators, newest first."""
    return (
        AIVerdict.objects.filter(annotator__project=project, status=AIVerdict.Status.FAILED)
        .select_related("annotator")
        .order_by("-updated_at", "-id")[:limit]
    )


def ai_human_agreement(
    *, annotator: AIAnnotator, source_kinds: tuple[str, ...] = (Judgement.SourceKind.HUMAN,)
) -> dict:
    """On comparisons with both a current ok verdict of `annotator` and human A/B
    judgements: n (comparisons), agree (the human majority equals the AI's choice; human
    ties are left out) and rate (agree / n, None when n is 0). `source_kinds` widens
    "human" (e.g. to imported labels as well)."""
    ai = dict(
        AIVerdict.objects.filter(
            annotator=annotator, status=AIVerdict.Status.OK, is_current=True
        ).values_list("comparison_id", "choice")
    )
    votes: dict[int, Counter] = defaultdict(Counter)
    for cid, choice in Judgement.objects.filter(
        comparison_id__in=list(ai),
        source_kind__in=source_kinds,
        choice__in=[Choice.A, Choice.B],
    ).values_list("comparison_id", "choice"):
        votes[cid][choice] += 1
    n = agree = 0
    for cid, counter in votes.items():
        (top, count), *rest = counter.most_common()
        if rest and rest[0][1] == count:
            continue  # humans split evenly: no majority to compare with
        n += 1
        agree += top == ai[cid]
    return {"n": n, "agree": agree, "rate": agree / n if n else None}
