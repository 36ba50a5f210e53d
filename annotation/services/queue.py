"""The human annotation queue: leasing the next comparison, submitting, skipping, undoing.

Each comparison routed to humans needs `project.overlap` human judgements. A slot is taken
by a submitted judgement or by a live lease (leased_until in the future); an expired lease
frees its slot without any sweeper. The next item is chosen by priority, then a stable
random key, with an index-driven query that locks the chosen comparison with
`FOR UPDATE SKIP LOCKED`, so that concurrent annotators never take the same slot and never
wait on each other. What counts as a taken slot is one SQL fragment, `slots_taken_sql`,
that every caller shares (this queue's and the ranking queue's).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from annotation.models import Assignment, Candidate, Choice, Comparison, Judgement, Project
from annotation.services.labels import comparison_labels_refresh
from core.exceptions import ApplicationError

LEASE = timedelta(minutes=10)
SHOWN = ("left", "right", "tie", "both_bad")
NOT_PLAYED = "Play both clips to the end before you choose."


def slots_taken_sql(*, table: str, fk: str, item: str) -> str:
    """SQL for the number of an item's slots that are taken: the rows of `table` (pairwise or
    ranking assignments) whose `fk` is `item` (a column, or a parameter such as %(item)s)
    that are submitted, or leased with the lease still running at %(now)s. The one rule
    behind every caller: the queue's pick and its recount under the row lock, a late
    submission, and the ranking queue's pick, recount, late submission and counter."""
    return f"""(SELECT count(*) FROM {table} s WHERE s.{fk} = {item}
           AND (s.state = 'submitted' OR (s.state = 'leased' AND s.leased_until > %(now)s)))"""


def _pick_sql(*, gold: bool, passed: list[int]) -> str:
    c, a = Comparison._meta.db_table, Assignment._meta.db_table
    if gold:
        # Gold items: any number of people may answer them; they never count as labels.
        where = "c.is_gold"
        order = "c.queue_key"
    else:
        # Pairs curation dropped are out of the export and training: no work for people.
        taken = slots_taken_sql(table=a, fk="comparison_id", item="c.id")
        where = f"""c.status = 'pending' AND c.route IN ('human', 'both') AND NOT c.is_gold
            AND NOT c.excluded AND {taken} < %(overlap)s"""
        order = "c.priority DESC, c.queue_key"
    if passed:  # ids (ints) already found full under the lock in this call
        where += f" AND c.id NOT IN ({', '.join(str(int(i)) for i in passed)})"
    return f"""
        SELECT c.id FROM {c} c
        WHERE c.project_id = %(project)s AND {where}
          AND NOT EXISTS (SELECT 1 FROM {a} mine WHERE mine.comparison_id = c.id
                          AND mine.annotator_id = %(user)s)
        ORDER BY {order}
        LIMIT 1 FOR UPDATE OF c SKIP LOCKED"""


def _pick(*, project: Project, annotator, gold: bool, now) -> int | None:
    """Lock and return the next comparison with a free slot for `annotator`.

    The candidate query runs on a snapshot taken before it locks the row, so under
    concurrency its slot count can be stale (another annotator leased the row and committed
    just before we locked it). Once the row is locked nobody else can add to it, so the
    slots are counted again with a fresh statement, and a full row is passed over."""
    passed: list[int] = []
    for _ in range(20):
        with connection.cursor() as cursor:
            cursor.execute(
                _pick_sql(gold=gold, passed=passed),
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
        comparison_id = row[0]
        if _still_open(
            comparison_id, annotator=annotator, gold=gold, overlap=project.overlap, now=now
        ):
            return comparison_id
        passed.append(comparison_id)
    return None


def _still_open(comparison_id: int, *, annotator, gold: bool, overlap: int, now) -> bool:
    """Under the row lock, with a fresh statement: may `annotator` take a slot here?"""
    a, c = Assignment._meta.db_table, Comparison._meta.db_table
    taken_sql = slots_taken_sql(table=a, fk="comparison_id", item="c.id")
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT c.status, NOT c.is_gold,
                       EXISTS (SELECT 1 FROM {a} WHERE comparison_id = c.id
                               AND annotator_id = %(user)s),
                       {taken_sql}
                FROM {c} c WHERE c.id = %(item)s""",
            {"user": annotator.id, "now": now, "item": comparison_id},
        )
        status, counted, mine, taken = cursor.fetchone()
    if mine:
        return False
    if gold:
        return True
    return status == Comparison.Status.PENDING and counted and taken < overlap


def assignment_current_for(*, annotator, project: Project) -> Assignment | None:
    """The annotator's live lease in this project, if any (a reload resumes it)."""
    return (
        Assignment.objects.filter(
            annotator=annotator,
            comparison__project=project,
            state=Assignment.State.LEASED,
            leased_until__gt=timezone.now(),
        )
        .select_related("comparison")
        .order_by("created_at")
        .first()
    )


def assignment_next_for(
    *, annotator, project: Project, exclude: Assignment | None = None
) -> Assignment | None:
    """Lease the next comparison for `annotator` (or return a live lease they hold).

    `exclude`: a lease the caller is showing already; used to prefetch the one after it.
    """
    now = timezone.now()
    live = Assignment.objects.filter(
        annotator=annotator,
        comparison__project=project,
        state=Assignment.State.LEASED,
        leased_until__gt=now,
    )
    if exclude is not None:
        live = live.exclude(pk=exclude.pk)
    current = live.select_related("comparison").order_by("created_at").first()
    if current is not None:
        return current
    with transaction.atomic():
        comparison_id = None
        if project.gold_ratio and random.random() < project.gold_ratio:
            comparison_id = _pick(project=project, annotator=annotator, gold=True, now=now)
        if comparison_id is None:
            comparison_id = _pick(project=project, annotator=annotator, gold=False, now=now)
        if comparison_id is None:
            return None
        return Assignment.objects.create(
            comparison_id=comparison_id,
            annotator=annotator,
            leased_until=now + LEASE,
            presentation_order=random.choice(Assignment.Order.values),
        )


@dataclass(frozen=True)
class Answer:
    """What the annotator answered, in screen terms (left/right as they saw them)."""

    choice: str  # left, right, tie, both_bad
    strength: int | None = None
    aspects: dict | None = None  # {"left": {"helpfulness": 3}, "right": {...}}
    rationale: str = ""
    time_spent_ms: int | None = None


def screen_sides(order: str) -> dict[str, str]:
    """Screen side -> canonical candidate ("a"/"b") for a presentation order."""
    left, right = ("a", "b") if order == Assignment.Order.AB else ("b", "a")
    return {"left": left, "right": right}


def answer_to_stored(*, answer: Answer, order: str) -> tuple[str, dict]:
    """Screen terms -> canonical candidates: the stored choice names the real candidate."""
    side = screen_sides(order)
    left, right = side["left"], side["right"]
    choice = {"left": left, "right": right, "tie": Choice.TIE, "both_bad": Choice.BOTH_BAD}[
        answer.choice
    ]
    aspects = {side[k]: v for k, v in (answer.aspects or {}).items()}
    return choice, aspects


def answer_validate(*, project: Project, answer: Answer) -> None:
    schema = project.label_schema
    if answer.choice not in SHOWN:
        raise ApplicationError("Choose A, B, tie or both bad.")
    if answer.choice == "tie" and not schema.get("allow_tie"):
        raise ApplicationError("This project does not allow ties.")
    if answer.choice == "both_bad" and not schema.get("allow_both_bad"):
        raise ApplicationError("This project does not allow 'both bad'.")
    levels = schema.get("strength") or []
    if answer.strength is not None and not (levels and 0 <= answer.strength < len(levels)):
        raise ApplicationError("Pick a strength from the project's scale.")
    declared = {a["name"]: a for a in schema.get("aspects") or []}
    for side, ratings in (answer.aspects or {}).items():
        if side not in ("left", "right") or not isinstance(ratings, dict):
            raise ApplicationError("Aspect ratings are given per candidate.")
        for name, value in ratings.items():
            spec = declared.get(name)
            if spec is None:
                raise ApplicationError(f"Unknown aspect '{name}'.")
            lo, hi = spec.get("min", 0), spec["max"]
            if not isinstance(value, int) or not lo <= value <= hi:
                raise ApplicationError(f"Rate {name} from {lo} to {hi}.")
    rationale = schema.get("rationale", "off")
    if rationale == "required" and not answer.rationale.strip():
        raise ApplicationError("This project asks for a rationale.")
    if len(answer.rationale) > 10_000:
        raise ApplicationError("The rationale is longer than 10,000 characters.")


def judgement_submit(*, assignment: Assignment, annotator, answer: Answer) -> Judgement:
    """Record the annotator's answer. Idempotent: submitting the same assignment again (a
    double click, a retry, a replayed request) returns the judgement it made the first time."""
    if assignment.annotator_id != annotator.id:
        raise ApplicationError("This item is not yours.")
    with transaction.atomic():
        # The comparison row is the lock that serialises submissions of its slots.
        comparison = (
            Comparison.objects.select_for_update(of=("self",))
            .select_related("project")
            .get(pk=assignment.comparison_id)
        )
        assignment = Assignment.objects.select_for_update().get(pk=assignment.pk)
        if assignment.state == Assignment.State.SUBMITTED:
            existing = Judgement.objects.filter(assignment=assignment).first()
            if existing is not None:
                return existing
        if assignment.state != Assignment.State.LEASED:
            raise ApplicationError("This item was skipped or has expired; take the next one.")
        project = comparison.project
        # Curation or routing may take a pair away while it is on someone's screen.
        if comparison.excluded:
            raise ApplicationError(
                "Curation excluded this pair while you worked on it; take the next one."
            )
        if comparison.route == Comparison.Route.AI:
            raise ApplicationError(
                "This pair went to an AI annotator while you worked on it; take the next one."
            )
        if not comparison.is_gold:
            if comparison.human_judgement_count >= project.overlap:
                raise ApplicationError("This item already has all its labels; take the next one.")
            if (
                assignment.leased_until <= timezone.now()
                and slots_taken(
                    table=Assignment._meta.db_table, fk="comparison_id", item_id=comparison.pk
                )
                >= project.overlap
            ):
                raise ApplicationError("Your time on this item ran out and others took it.")
        if project.require_full_play and not comparison_plays_done(
            comparison=comparison, played=assignment.played
        ):
            raise ApplicationError(NOT_PLAYED)
        answer_validate(project=project, answer=answer)
        choice, aspects = answer_to_stored(answer=answer, order=assignment.presentation_order)
        # A strength says how much better one side is: it means nothing on a tie or both-bad.
        strength = answer.strength if choice in (Choice.A, Choice.B) else None
        judgement = Judgement.objects.create(
            comparison=comparison,
            source_kind=Judgement.SourceKind.HUMAN,
            user=annotator,
            source_name=annotator.get_username(),
            assignment=assignment,
            choice=choice,
            strength=strength,
            aspects=aspects,
            rationale=answer.rationale,
            time_spent_ms=answer.time_spent_ms,
            presentation_order=assignment.presentation_order,
            label_schema_version=project.label_schema_version,
            idempotency_key=uuid.uuid5(uuid.NAMESPACE_URL, f"assignment:{assignment.key}").hex,
        )
        Assignment.objects.filter(pk=assignment.pk).update(
            state=Assignment.State.SUBMITTED, updated_at=timezone.now()
        )
        if not comparison.is_gold:
            Comparison.objects.filter(pk=comparison.pk).update(
                human_judgement_count=F("human_judgement_count") + 1
            )
            if comparison.human_judgement_count + 1 >= project.overlap:
                comparison_labels_refresh(comparison_ids=[comparison.pk])
    return judgement


def comparison_plays_done(*, comparison: Comparison, played: list) -> bool:
    """Whether every audio candidate of the comparison is among `played` (canonical sides);
    a pair with no audio needs no plays."""
    audio = dict(
        Candidate.objects.filter(
            pk__in=[comparison.candidate_a_id, comparison.candidate_b_id],
            kind=Candidate.Kind.AUDIO,
        ).values_list("pk", "kind")
    )
    needed = {
        side
        for side, pk in (("a", comparison.candidate_a_id), ("b", comparison.candidate_b_id))
        if pk in audio
    }
    return needed <= set(played)


def assignment_played(*, assignment: Assignment, annotator, side: str) -> Assignment:
    """Record that the annotator played the clip on screen side `side` ("left"/"right") to
    its end: the canonical side ("a"/"b", by the assignment's presentation order) joins
    `played`. Idempotent: a second report of the same side changes nothing."""
    if assignment.annotator_id != annotator.id:
        raise ApplicationError("This item is not yours.")
    if side not in ("left", "right"):
        raise ApplicationError("Say which side was played: left or right.")
    with transaction.atomic():
        assignment = Assignment.objects.select_for_update().get(pk=assignment.pk)
        canonical = screen_sides(assignment.presentation_order)[side]
        if canonical not in assignment.played:
            assignment.played = sorted({*assignment.played, canonical})
            Assignment.objects.filter(pk=assignment.pk).update(
                played=assignment.played, updated_at=timezone.now()
            )
    return assignment


def slots_taken(*, table: str, fk: str, item_id: int) -> int:
    """How many of one item's slots are taken now (slots_taken_sql)."""
    sql = slots_taken_sql(table=table, fk=fk, item="%(item)s")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {sql}", {"item": item_id, "now": timezone.now()})
        return cursor.fetchone()[0]


def assignment_skip(*, assignment: Assignment, annotator, reason: str = "") -> Assignment:
    """Skip: the annotator never gets this comparison again; the slot goes back."""
    if assignment.annotator_id != annotator.id:
        raise ApplicationError("This item is not yours.")
    updated = Assignment.objects.filter(pk=assignment.pk, state=Assignment.State.LEASED).update(
        state=Assignment.State.SKIPPED, skip_reason=reason[:500], updated_at=timezone.now()
    )
    assignment.refresh_from_db()
    if not updated and assignment.state != Assignment.State.SKIPPED:
        raise ApplicationError("Only an item you are working on can be skipped.")
    return assignment


def judgement_undo_last(*, annotator, project: Project) -> Assignment:
    """Take back the annotator's last judgement in `project` while its lease is still open;
    the item is theirs again, as it was before they answered."""
    with transaction.atomic():
        judgement = (
            Judgement.objects.select_for_update()
            .filter(user=annotator, comparison__project=project, assignment__isnull=False)
            .select_related("assignment")
            .order_by("-created_at", "-id")
            .first()
        )
        if judgement is None:
            raise ApplicationError("There is nothing to undo.")
        assignment = judgement.assignment
        if assignment.leased_until <= timezone.now():
            raise ApplicationError("Too late to undo: the item's time has run out.")
        comparison = Comparison.objects.select_for_update().get(pk=judgement.comparison_id)
        judgement.delete()
        Assignment.objects.filter(pk=assignment.pk).update(
            state=Assignment.State.LEASED, updated_at=timezone.now()
        )
        if not comparison.is_gold:
            reopened = Comparison.objects.filter(pk=comparison.pk)
            reopened.update(human_judgement_count=F("human_judgement_count") - 1)
            # Fewer than k judgements again: the item is open and has no label, unless a
            # reviewer has set its label, which stands.
            reopened.filter(resolutions__isnull=True).update(
                status=Comparison.Status.PENDING,
                label=None,
                label_confidence=None,
                label_margin=None,
            )
    assignment.refresh_from_db()
    return assignment
