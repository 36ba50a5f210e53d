"""The annotation queue: leases, overlap, skips, undo, gold, and concurrency on PostgreSQL."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from annotation.models import Assignment, Comparison, Judgement, Membership
from annotation.services.importing import pairs_import
from annotation.services.queue import (
    Answer,
    assignment_next_for,
    assignment_skip,
    judgement_submit,
    judgement_undo_last,
)
from core.exceptions import ApplicationError
from tests.factories import MembershipFactory, UserFactory


def _unlabelled(project, tmp_path, n: int) -> None:
    """n comparisons with no label (a prompt with two responses each)."""
    path = tmp_path / "pool.jsonl"
    path.write_text(
        "".join(f'{{"prompt": "P{i}", "responses": ["x{i}", "y{i}"]}}\n' for i in range(n))
    )
    pairs_import(project=project, path=path, source_name="import:pool.jsonl")


def _annotators(project, n: int) -> list:
    return [
        MembershipFactory(project=project, user=UserFactory(), role=Membership.Role.ANNOTATOR).user
        for _ in range(n)
    ]


@pytest.mark.django_db
def test_each_comparison_gets_k_judgements_from_different_people(project, tmp_path):
    project.overlap = 2
    project.save()
    _unlabelled(project, tmp_path, 3)
    people = _annotators(project, 3)

    for person in people:
        while (a := assignment_next_for(annotator=person, project=project)) is not None:
            judgement_submit(assignment=a, annotator=person, answer=Answer("left"))

    counts = Counter(
        Judgement.objects.filter(source_kind="human").values_list("comparison_id", flat=True)
    )
    assert sorted(counts.values()) == [2, 2, 2]
    # Each is settled: a majority label, or "disputed" when the two votes split.
    for c in Comparison.objects.all():
        assert (c.status, c.label is None) in (("labelled", False), ("disputed", True))
    pairs = Judgement.objects.values_list("comparison_id", "user_id")
    assert len(set(pairs)) == len(pairs)


@pytest.mark.django_db
def test_next_returns_the_live_lease_until_it_is_answered(project, tmp_path, annotator):
    _unlabelled(project, tmp_path, 2)
    first = assignment_next_for(annotator=annotator, project=project)
    assert assignment_next_for(annotator=annotator, project=project) == first
    prefetched = assignment_next_for(annotator=annotator, project=project, exclude=first)
    assert prefetched is not None
    assert prefetched.comparison_id != first.comparison_id
    assert Assignment.objects.count() == 2


@pytest.mark.django_db
def test_the_stored_choice_names_the_real_candidate(project, tmp_path, annotator):
    _unlabelled(project, tmp_path, 2)
    for order, expected in (("ab", "a"), ("ba", "b")):
        a = assignment_next_for(annotator=annotator, project=project)
        Assignment.objects.filter(pk=a.pk).update(presentation_order=order)
        a.refresh_from_db()
        j = judgement_submit(
            assignment=a, annotator=annotator,
            answer=Answer("left", aspects={"left": {}, "right": {}}),
        )  # fmt: skip
        assert (j.choice, j.presentation_order) == (expected, order)


@pytest.mark.django_db
def test_double_submit_makes_one_judgement(project, tmp_path, annotator):
    _unlabelled(project, tmp_path, 1)
    a = assignment_next_for(annotator=annotator, project=project)
    first = judgement_submit(assignment=a, annotator=annotator, answer=Answer("left"))
    again = judgement_submit(assignment=a, annotator=annotator, answer=Answer("right"))
    assert again.pk == first.pk
    assert again.choice == first.choice
    assert Judgement.objects.filter(source_kind="human").count() == 1
    assert Comparison.objects.get().human_judgement_count == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"excluded": True}, "Curation excluded this pair"),
        ({"route": "ai"}, "went to an AI annotator"),
    ],
)
def test_a_pair_taken_away_while_on_screen_is_not_recorded(
    project, tmp_path, annotator, change, message
):
    _unlabelled(project, tmp_path, 1)
    a = assignment_next_for(annotator=annotator, project=project)
    Comparison.objects.filter(pk=a.comparison_id).update(**change)

    with pytest.raises(ApplicationError, match=message):
        judgement_submit(assignment=a, annotator=annotator, answer=Answer("left"))

    assert not Judgement.objects.filter(source_kind="human").exists()
    assert Comparison.objects.get().human_judgement_count == 0


@pytest.mark.django_db
def test_a_skipped_comparison_never_comes_back(project, tmp_path, annotator):
    _unlabelled(project, tmp_path, 1)
    a = assignment_next_for(annotator=annotator, project=project)
    assignment_skip(assignment=a, annotator=annotator, reason="unreadable")
    assert assignment_next_for(annotator=annotator, project=project) is None
    assert Assignment.objects.get().skip_reason == "unreadable"
    with pytest.raises(ApplicationError, match="skipped or has expired"):
        judgement_submit(assignment=a, annotator=annotator, answer=Answer("left"))


@pytest.mark.django_db
def test_an_expired_lease_returns_the_slot_to_the_pool(project, tmp_path):
    _unlabelled(project, tmp_path, 1)
    first, second = _annotators(project, 2)
    a = assignment_next_for(annotator=first, project=project)
    assert assignment_next_for(annotator=second, project=project) is None  # k=1, slot leased

    Assignment.objects.filter(pk=a.pk).update(leased_until=timezone.now() - timedelta(seconds=1))

    b = assignment_next_for(annotator=second, project=project)
    assert b is not None
    assert b.comparison_id == a.comparison_id
    judgement_submit(assignment=b, annotator=second, answer=Answer("right"))
    # The first annotator came back too late: the slot is gone, nothing is recorded.
    with pytest.raises(ApplicationError, match="already has all its labels"):
        judgement_submit(assignment=a, annotator=first, answer=Answer("left"))
    assert Judgement.objects.filter(source_kind="human").count() == 1


@pytest.mark.django_db
def test_undo_reopens_the_item_while_its_lease_is_open(project, tmp_path, annotator):
    _unlabelled(project, tmp_path, 1)
    a = assignment_next_for(annotator=annotator, project=project)
    judgement_submit(assignment=a, annotator=annotator, answer=Answer("left"))
    assert Comparison.objects.get().status == "labelled"

    back = judgement_undo_last(annotator=annotator, project=project)

    assert back.pk == a.pk
    assert back.state == "leased"
    c = Comparison.objects.get()
    assert (c.status, c.label, c.human_judgement_count) == ("pending", None, 0)
    assert not Judgement.objects.filter(source_kind="human").exists()
    judgement_submit(assignment=back, annotator=annotator, answer=Answer("right"))
    assert Comparison.objects.get().label in ("a", "b")

    Assignment.objects.filter(pk=a.pk).update(leased_until=timezone.now() - timedelta(seconds=1))
    with pytest.raises(ApplicationError, match="Too late"):
        judgement_undo_last(annotator=annotator, project=project)


@pytest.mark.django_db
def test_answers_follow_the_label_schema(project, tmp_path, annotator):
    project.label_schema = {
        "mode": "pairwise", "allow_tie": False, "allow_both_bad": False,
        "strength": ["slight", "clear"], "aspects": [{"name": "helpfulness", "min": 0, "max": 4}],
        "rationale": "required",
    }  # fmt: skip
    project.save()
    _unlabelled(project, tmp_path, 1)
    a = assignment_next_for(annotator=annotator, project=project)
    bad = [
        (Answer("tie", rationale="r"), "does not allow ties"),
        (Answer("both_bad", rationale="r"), "does not allow 'both bad'"),
        (Answer("left", strength=5, rationale="r"), "strength"),
        (Answer("left", aspects={"left": {"helpfulness": 9}}, rationale="r"), "from 0 to 4"),
        (Answer("left", aspects={"left": {"wit": 1}}, rationale="r"), "Unknown aspect"),
        (Answer("left"), "asks for a rationale"),
    ]
    for answer, message in bad:
        with pytest.raises(ApplicationError, match=message):
            judgement_submit(assignment=a, annotator=annotator, answer=answer)
    assert not Judgement.objects.filter(source_kind="human").exists()
    good = Answer(
        "right",
        strength=1,
        aspects={"left": {"helpfulness": 1}, "right": {"helpfulness": 4}},
        rationale="clearer",
    )
    j = judgement_submit(assignment=a, annotator=annotator, answer=good)
    right = "b" if a.presentation_order == "ab" else "a"
    assert j.aspects[right] == {"helpfulness": 4}


@pytest.mark.django_db
def test_gold_items_are_mixed_in_and_do_not_count_as_labels(project, tmp_path, annotator):
    _unlabelled(project, tmp_path, 3)
    gold = Comparison.objects.order_by("id").first()
    Comparison.objects.filter(pk=gold.pk).update(is_gold=True, gold_label="a")
    project.gold_ratio = 1.0
    project.save()

    a = assignment_next_for(annotator=annotator, project=project)

    assert a.comparison_id == gold.pk
    judgement_submit(assignment=a, annotator=annotator, answer=Answer("left"))
    gold.refresh_from_db()
    assert (gold.human_judgement_count, gold.label) == (0, None)
    # Once answered, the gold item is not served again; normal items follow.
    assert assignment_next_for(annotator=annotator, project=project).comparison_id != gold.pk


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_annotators_never_share_a_slot(project, tmp_path):
    """20 threads, each with its own connection, pull and submit until the queue is empty."""
    project.overlap = 3
    project.save()
    _unlabelled(project, tmp_path, 60)
    people = _annotators(project, 20)
    errors: list[BaseException] = []
    leased: list[tuple[int, int]] = []
    lock = threading.Lock()

    def work(person) -> None:
        try:
            while (a := assignment_next_for(annotator=person, project=project)) is not None:
                with lock:
                    leased.append((a.comparison_id, person.id))
                judgement_submit(assignment=a, annotator=person, answer=Answer("left"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(p,)) for p in people]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    assert not errors, errors
    assert len(leased) == len(set(leased)) == 180, "a slot was handed out twice"
    per_comparison = Counter(
        Judgement.objects.filter(source_kind="human").values_list("comparison_id", flat=True)
    )
    assert len(per_comparison) == 60
    assert set(per_comparison.values()) == {3}
    assert set(Comparison.objects.values_list("human_judgement_count", flat=True)) == {3}
    assert not Comparison.objects.filter(status="pending").exists()


@pytest.mark.django_db
def test_a_tie_carries_no_strength(project, tmp_path, annotator):
    _unlabelled(project, tmp_path, 1)
    a = assignment_next_for(annotator=annotator, project=project)
    j = judgement_submit(assignment=a, annotator=annotator, answer=Answer("tie", strength=2))
    assert (j.choice, j.strength) == ("tie", None)
