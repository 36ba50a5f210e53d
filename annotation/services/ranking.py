"""Ranking mode (InstructGPT-style): a Ranking (a prompt with N candidates) is leased whole,
the annotator orders its candidates (ties allowed when the schema says so, only the top k
when it sets top_k), and the submitted order is stored as a RankingJudgement and expanded
into the pairwise Judgements it implies, which is what labels, agreement, training and
export read.

The queue follows the pairwise one (annotation/services/queue.py): `project.overlap`
rankings per Ranking, a slot taken by a submitted ranking or a live lease, never the same
Ranking twice to one annotator (nor one they skipped), `FOR UPDATE SKIP LOCKED` with the
slots counted again under the lock.

The few reads the ranking page needs live here too rather than in annotation/selectors.py,
which is being reshaped separately; they move there once it settles.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import uuid
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, F, Q
from django.http import Http404
from django.utils import timezone

from annotation.models import (
    Assignment,
    Candidate,
    Choice,
    Comparison,
    Judgement,
    Project,
    Ranking,
    RankingAssignment,
    RankingJudgement,
)
from annotation.services.labels import comparison_labels_refresh
from annotation.services.queue import LEASE, slots_taken, slots_taken_sql
from core.exceptions import ApplicationError

NOT_PLAYED = "Play every clip to the end before you rank them."

LEASED, SUBMITTED, SKIPPED = (
    Assignment.State.LEASED,
    Assignment.State.SUBMITTED,
    Assignment.State.SKIPPED,
)


def ranking_mode(project: Project) -> bool:
    return (project.label_schema or {}).get("mode") == "ranking"


# ---------------------------------------------------------------------------- the queue


def _pick_sql(passed: list[int]) -> str:
    r, a = Ranking._meta.db_table, RankingAssignment._meta.db_table
    extra = f" AND r.id NOT IN ({', '.join(str(int(i)) for i in passed)})" if passed else ""
    taken = slots_taken_sql(table=a, fk="ranking_id", item="r.id")
    return f"""
        SELECT r.id FROM {r} r
        WHERE r.project_id = %(project)s{extra}
          AND {taken} < %(overlap)s
          AND NOT EXISTS (SELECT 1 FROM {a} mine WHERE mine.ranking_id = r.id
                          AND mine.annotator_id = %(user)s)
        ORDER BY r.id
        LIMIT 1 FOR UPDATE OF r SKIP LOCKED"""


def _still_open(ranking_id: int, *, annotator, overlap: int, now) -> bool:
    """Under the row lock, with a fresh statement: may `annotator` take a slot here? (The
    pick query's slot count comes from a snapshot taken before the lock; see queue._pick.)"""
    a = RankingAssignment._meta.db_table
    taken_sql = slots_taken_sql(table=a, fk="ranking_id", item="%(item)s")
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT EXISTS (SELECT 1 FROM {a} WHERE ranking_id = %(item)s
                               AND annotator_id = %(user)s),
                       {taken_sql}""",
            {"item": ranking_id, "user": annotator.id, "now": now},
        )
        mine, taken = cursor.fetchone()
    return not mine and taken < overlap


def _pick(*, project: Project, annotator, now) -> int | None:
    passed: list[int] = []
    for _ in range(20):
        with connection.cursor() as cursor:
            cursor.execute(
                _pick_sql(passed),
                {
                    "project": project.id,
                    "user": annotator.id,
                    "now": now,
                    "overlap": project.overlap,
                },
            )
            row = cursor.fetchone()
        if row is None:
            return None
        if _still_open(row[0], annotator=annotator, overlap=project.overlap, now=now):
            return row[0]
        passed.append(row[0])
    return None


def ranking_assignment_next_for(
    *, annotator, project: Project, exclude: RankingAssignment | None = None
) -> RankingAssignment | None:
    """Lease the next Ranking for `annotator` (or return the oldest live lease they hold).

    `exclude`: a lease the caller is showing already; used to prefetch the one after it.
    """
    now = timezone.now()
    live = RankingAssignment.objects.filter(
        annotator=annotator, ranking__project=project, state=LEASED, leased_until__gt=now
    )
    if exclude is not None:
        live = live.exclude(pk=exclude.pk)
    current = live.order_by("created_at").first()
    if current is not None:
        return current
    with transaction.atomic():
        ranking_id = _pick(project=project, annotator=annotator, now=now)
        if ranking_id is None:
            return None
        order = list(
            Ranking.candidates.through.objects.filter(ranking_id=ranking_id).values_list(
                "candidate_id", flat=True
            )
        )
        random.shuffle(order)
        return RankingAssignment.objects.create(
            ranking_id=ranking_id,
            annotator=annotator,
            leased_until=now + LEASE,
            presentation_order=order,
        )


def ranking_assignment_get_for(*, annotator, project: Project, key) -> RankingAssignment:
    """One of `annotator`'s own ranking leases in `project`; anyone else's key is a 404."""
    try:
        key = uuid.UUID(str(key))
    except ValueError:
        raise Http404("No such item.") from None
    assignment = RankingAssignment.objects.filter(
        key=key, annotator=annotator, ranking__project=project
    ).first()
    if assignment is None:
        raise Http404("No such item.")
    return assignment


def ranking_assignment_candidates(*, assignment: RankingAssignment) -> list[Candidate]:
    """The ranking's candidates in the order this annotator was shown them."""
    by_id = {c.id: c for c in assignment.ranking.candidates.all()}
    shown = [by_id.pop(cid) for cid in assignment.presentation_order if cid in by_id]
    return shown + sorted(by_id.values(), key=lambda c: c.id)


def ranking_progress(*, annotator, project: Project) -> dict[str, int]:
    """The ranking page's counters: the annotator's rankings today and in all, and the
    Rankings that still have free slots."""
    midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    done = RankingJudgement.objects.filter(user=annotator, ranking__project=project).aggregate(
        done_total=Count("id"), done_today=Count("id", filter=Q(created_at__gte=midnight))
    )
    taken = slots_taken_sql(table=RankingAssignment._meta.db_table, fk="ranking_id", item="r.id")
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM {Ranking._meta.db_table} r "
            f"WHERE r.project_id = %(project)s AND {taken} < %(overlap)s",
            {"project": project.pk, "overlap": project.overlap, "now": timezone.now()},
        )
        remaining = cursor.fetchone()[0]
    return {**done, "remaining": remaining}


# ---------------------------------------------------------------------------- answers


def ranking_order_validate(*, order: Any, candidate_ids: set[int], schema: dict) -> list[list[int]]:
    """Check a submitted order against the ranking and the schema; return it normalised."""
    if not isinstance(order, list) or not order:
        raise ApplicationError("Order the candidates, best first.")
    seen: set[int] = set()
    groups: list[list[int]] = []
    for group in order:
        if not isinstance(group, list) or not group:
            raise ApplicationError("Each place in the order holds one or more candidates.")
        for cid in group:
            if not isinstance(cid, int) or isinstance(cid, bool) or cid not in candidate_ids:
                raise ApplicationError("The order names a candidate that is not in this item.")
            if cid in seen:
                raise ApplicationError("The order names a candidate twice.")
            seen.add(cid)
        if len(group) > 1 and not schema.get("allow_ties"):
            raise ApplicationError("This project does not allow ties.")
        groups.append(list(group))
    if seen != candidate_ids:
        top_k = schema.get("top_k")
        if not top_k:
            raise ApplicationError("Place every candidate in the order.")
        if len(seen) < min(top_k, len(candidate_ids)):
            raise ApplicationError(f"Rank at least the top {top_k} candidates.")
    return groups


def ranking_pairs(groups: list[list[int]], unranked: set[int]) -> list[tuple[int, int, bool]]:
    """The pairs an order implies, as (better, worse, tied). Every candidate beats those in
    later groups and in `unranked`; a group's members tie; the unranked rest make no pairs
    among themselves."""
    pairs: list[tuple[int, int, bool]] = []
    for i, group in enumerate(groups):
        pairs += [(x, y, True) for x, y in itertools.combinations(group, 2)]
        below = [y for later in groups[i + 1 :] for y in later] + sorted(unranked)
        pairs += [(x, y, False) for x in group for y in below]
    return pairs


def _comparisons_for(
    ranking: Ranking, candidates: dict[int, Candidate], pairs: list[tuple[int, int, bool]]
) -> dict[tuple[int, int], Comparison]:
    """The Comparison of each pair, created (as the importer would) where it is missing.
    Keys are canonical (candidate_a, candidate_b): a has the smaller content hash."""

    def canonical(x: int, y: int) -> tuple[int, int]:
        return (x, y) if candidates[x].content_hash < candidates[y].content_hash else (y, x)

    keys = {canonical(x, y) for x, y, _ in pairs}
    missing = []
    for a, b in keys:
        pair_hash = hashlib.sha256(
            (candidates[a].content_hash + candidates[b].content_hash).encode()
        ).hexdigest()
        missing.append(
            Comparison(
                project_id=ranking.project_id,
                prompt_id=ranking.prompt_id,
                candidate_a_id=a,
                candidate_b_id=b,
                ranking=ranking,
                queue_key=int(pair_hash[:15], 16),  # importing._queue_key
            )
        )
    # Another submission of the same ranking may create them at the same moment: the
    # unique pair constraint keeps one row, which is read back (and locked) below.
    Comparison.objects.bulk_create(missing, ignore_conflicts=True)
    q = Q()
    for a, b in keys:
        q |= Q(candidate_a_id=a, candidate_b_id=b)
    rows = Comparison.objects.select_for_update().filter(q).order_by("id")
    return {(c.candidate_a_id, c.candidate_b_id): c for c in rows}


def ranking_submit(
    *,
    assignment: RankingAssignment,
    annotator,
    order: Any,
    time_spent_ms: int | None = None,
) -> RankingJudgement:
    """Record a ranking and the pairwise judgements it implies. Idempotent: submitting the
    same assignment again returns the ranking judgement it made the first time."""
    if assignment.annotator_id != annotator.id:
        raise ApplicationError("This item is not yours.")
    with transaction.atomic():
        # The Ranking row serialises submissions of its slots, as the comparison row does
        # for pairs.
        ranking = (
            Ranking.objects.select_for_update(of=("self",))
            .select_related("project")
            .get(pk=assignment.ranking_id)
        )
        assignment = RankingAssignment.objects.select_for_update().get(pk=assignment.pk)
        if assignment.state == SUBMITTED:
            existing = RankingJudgement.objects.filter(assignment=assignment).first()
            if existing is not None:
                return existing
        if assignment.state != LEASED:
            raise ApplicationError("This item was skipped or has expired; take the next one.")
        project = ranking.project
        submitted = RankingAssignment.objects.filter(ranking=ranking, state=SUBMITTED)
        if submitted.count() >= project.overlap:
            raise ApplicationError("This item already has all its labels; take the next one.")
        if (
            assignment.leased_until <= timezone.now()
            and slots_taken(
                table=RankingAssignment._meta.db_table, fk="ranking_id", item_id=ranking.pk
            )
            >= project.overlap
        ):
            raise ApplicationError("Your time on this item ran out and others took it.")
        candidates = {c.id: c for c in ranking.candidates.all()}
        if project.require_full_play:
            audio = {c.id for c in candidates.values() if c.kind == Candidate.Kind.AUDIO}
            if not audio <= set(assignment.played):
                raise ApplicationError(NOT_PLAYED)
        schema = project.label_schema
        groups = ranking_order_validate(order=order, candidate_ids=set(candidates), schema=schema)
        ranked = {cid for group in groups for cid in group}
        judgement = RankingJudgement.objects.create(
            ranking=ranking,
            user=annotator,
            assignment=assignment,
            order=groups,
            top_k=schema.get("top_k") if ranked != set(candidates) else None,
            time_spent_ms=time_spent_ms,
            label_schema_version=project.label_schema_version,
            idempotency_key=uuid.uuid5(uuid.NAMESPACE_URL, f"ranking:{assignment.key}").hex,
        )
        pairs = ranking_pairs(groups, set(candidates) - ranked)
        _pairs_judge(judgement, annotator, project, candidates, pairs)
        RankingAssignment.objects.filter(pk=assignment.pk).update(
            state=SUBMITTED, updated_at=timezone.now()
        )
    return judgement


def _pairs_judge(
    judgement: RankingJudgement,
    annotator,
    project: Project,
    candidates: dict[int, Candidate],
    pairs: list[tuple[int, int, bool]],
) -> None:
    comparisons = _comparisons_for(judgement.ranking, candidates, pairs)
    # A pair this annotator has judged already (in pairwise mode, before the project
    # switched) keeps that judgement: one judgement per person per comparison.
    judged = set(
        Judgement.objects.filter(
            user=annotator, comparison__in=list(comparisons.values())
        ).values_list("comparison_id", flat=True)
    )
    rows, counted = [], []
    for better, worse, tied in pairs:
        first_is_a = candidates[better].content_hash < candidates[worse].content_hash
        key = (better, worse) if first_is_a else (worse, better)
        comparison = comparisons[key]
        if comparison.id in judged:
            continue
        choice = Choice.TIE if tied else (Choice.A if first_is_a else Choice.B)
        rows.append(
            Judgement(
                comparison=comparison,
                source_kind=Judgement.SourceKind.HUMAN,
                user=annotator,
                source_name=annotator.get_username(),
                ranking_judgement=judgement,
                choice=choice,
                label_schema_version=project.label_schema_version,
                idempotency_key=uuid.uuid5(
                    uuid.NAMESPACE_URL, f"ranking:{judgement.idempotency_key}:{key[0]}:{key[1]}"
                ).hex,
            )
        )
        if not comparison.is_gold:
            counted.append(comparison)
    Judgement.objects.bulk_create(rows)
    Comparison.objects.filter(id__in=[c.id for c in counted]).update(
        human_judgement_count=F("human_judgement_count") + 1
    )
    full = [c.id for c in counted if c.human_judgement_count + 1 >= project.overlap]
    if full:
        comparison_labels_refresh(comparison_ids=full)


def ranking_played(
    *, assignment: RankingAssignment, annotator, candidate_id: int
) -> RankingAssignment:
    """Record that the annotator played candidate `candidate_id` of the ranking to its end.
    Idempotent: a second report of the same candidate changes nothing."""
    if assignment.annotator_id != annotator.id:
        raise ApplicationError("This item is not yours.")
    if not assignment.ranking.candidates.filter(pk=candidate_id).exists():
        raise ApplicationError("That response is not in this item.")
    with transaction.atomic():
        assignment = RankingAssignment.objects.select_for_update().get(pk=assignment.pk)
        if candidate_id not in assignment.played:
            assignment.played = sorted({*assignment.played, candidate_id})
            RankingAssignment.objects.filter(pk=assignment.pk).update(
                played=assignment.played, updated_at=timezone.now()
            )
    return assignment


def ranking_skip(
    *, assignment: RankingAssignment, annotator, reason: str = ""
) -> RankingAssignment:
    """Skip: the annotator never gets this ranking again; the slot goes back."""
    if assignment.annotator_id != annotator.id:
        raise ApplicationError("This item is not yours.")
    updated = RankingAssignment.objects.filter(pk=assignment.pk, state=LEASED).update(
        state=SKIPPED, skip_reason=reason[:500], updated_at=timezone.now()
    )
    assignment.refresh_from_db()
    if not updated and assignment.state != SKIPPED:
        raise ApplicationError("Only an item you are working on can be skipped.")
    return assignment
