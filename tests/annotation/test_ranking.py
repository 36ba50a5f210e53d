"""Ranking mode: leasing whole rankings, validating orders, expanding them into pairs."""

from __future__ import annotations

import hashlib
import itertools
import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from annotation.models import (
    Assignment,
    Candidate,
    Comparison,
    Judgement,
    Prompt,
    Ranking,
    RankingAssignment,
    RankingJudgement,
)
from annotation.services.importing import pairs_import
from annotation.services.queue import assignment_next_for
from annotation.services.ranking import (
    ranking_assignment_next_for,
    ranking_skip,
    ranking_submit,
)
from core.exceptions import ApplicationError
from tests.factories import UserFactory, comparison_make

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}


def _ranking_mode(project, **changes) -> None:
    project.label_schema = {"mode": "ranking", **changes}
    project.save()


def _import(project, tmp_path, n: int, size: int = 3) -> None:
    """n unranked prompts with `size` responses each: a Ranking and its pairs per prompt."""
    path = tmp_path / "ranked.jsonl"
    path.write_text(
        "".join(
            json.dumps({"prompt": f"Prompt {i}", "responses": [f"R{i}-{j}" for j in range(size)]})
            + "\n"
            for i in range(n)
        )
    )
    pairs_import(project=project, path=path, source_name="import:ranked.jsonl")


def _bare_ranking(project, texts: list[str]) -> tuple[Ranking, list[Candidate]]:
    """A Ranking with no Comparison rows yet."""
    prompt = Prompt.objects.create(project=project, content_hash="p-bare", text="Bare prompt")
    candidates = [
        Candidate.objects.create(
            prompt=prompt, content_hash=hashlib.sha256(t.encode()).hexdigest(), text=t
        )
        for t in texts
    ]
    ranking = Ranking.objects.create(project=project, prompt=prompt)
    ranking.candidates.set(candidates)
    return ranking, candidates


def _stored(comparison: Comparison, better: int, worse: int) -> str:
    """The choice that says `better` beats `worse` on this comparison."""
    assert {comparison.candidate_a_id, comparison.candidate_b_id} == {better, worse}
    return "a" if comparison.candidate_a_id == better else "b"


def _pair(x: int, y: int) -> Comparison:
    return Comparison.objects.get(candidate_a_id__in=[x, y], candidate_b_id__in=[x, y])


def _label(project) -> str:
    return reverse("annotation:label", args=[project.slug])


def _submit(project, assignment) -> str:
    return reverse("annotation:rank_submit", args=[project.slug, assignment.key])


def _skip(project, assignment) -> str:
    return reverse("annotation:rank_skip", args=[project.slug, assignment.key])


def _ids(assignment: RankingAssignment) -> list[int]:
    return list(assignment.presentation_order)


# ---------------------------------------------------------------- expansion


def test_a_strict_order_expands_into_every_implied_pair_on_its_canonical_sides(
    project, annotator, tmp_path
):
    _ranking_mode(project)
    _import(project, tmp_path, 1, size=4)
    assignment = ranking_assignment_next_for(annotator=annotator, project=project)
    order = _ids(assignment)
    assert sorted(order) == sorted(assignment.ranking.candidates.values_list("id", flat=True))

    made = ranking_submit(
        assignment=assignment, annotator=annotator, order=[[c] for c in order], time_spent_ms=900
    )

    assert made.order == [[c] for c in order]
    assert (made.user, made.time_spent_ms, made.top_k) == (annotator, 900, None)
    judgements = Judgement.objects.filter(user=annotator)
    assert judgements.count() == 6
    for better, worse in itertools.combinations(order, 2):
        comparison = _pair(better, worse)
        judgement = judgements.get(comparison=comparison)
        assert judgement.choice == _stored(comparison, better, worse)
        assert judgement.source_kind == Judgement.SourceKind.HUMAN
        assert judgement.ranking_judgement == made
        assert judgement.assignment is None
    assignment.refresh_from_db()
    assert assignment.state == Assignment.State.SUBMITTED
    # overlap 1: every pair has its label now, and it says what the ranking says.
    for better, worse in itertools.combinations(order, 2):
        comparison = _pair(better, worse)
        assert comparison.human_judgement_count == 1
        assert comparison.status == Comparison.Status.LABELLED
        assert comparison.label == _stored(comparison, better, worse)


def test_both_canonical_directions_are_mapped(project, annotator):
    """Candidate content hashes decide a/b: ranking the larger hash first stores "b"."""
    _ranking_mode(project)
    ranking, (x, y) = _bare_ranking(project, ["one", "two"])
    small, large = sorted([x, y], key=lambda c: c.content_hash)
    assignment = ranking_assignment_next_for(annotator=annotator, project=project)

    ranking_submit(assignment=assignment, annotator=annotator, order=[[large.id], [small.id]])

    comparison = Comparison.objects.get(ranking=ranking)
    assert (comparison.candidate_a, comparison.candidate_b) == (small, large)
    assert Judgement.objects.get(comparison=comparison).choice == "b"
    assert comparison.label is None or comparison.label == "b"


def test_missing_pairs_are_created_as_the_importer_would(project, annotator):
    _ranking_mode(project)
    ranking, candidates = _bare_ranking(project, ["alpha", "beta", "gamma"])
    assignment = ranking_assignment_next_for(annotator=annotator, project=project)
    order = [c.id for c in candidates]

    ranking_submit(assignment=assignment, annotator=annotator, order=[[c] for c in order])

    comparisons = Comparison.objects.filter(ranking=ranking)
    assert comparisons.count() == 3
    by_id = {c.id: c for c in candidates}
    for comparison in comparisons:
        a, b = by_id[comparison.candidate_a_id], by_id[comparison.candidate_b_id]
        assert a.content_hash < b.content_hash
        assert comparison.prompt_id == ranking.prompt_id
        assert comparison.queue_key == int(
            hashlib.sha256((a.content_hash + b.content_hash).encode()).hexdigest()[:15], 16
        )
    for better, worse in itertools.combinations(order, 2):
        comparison = _pair(better, worse)
        assert comparison.judgements.get().choice == _stored(comparison, better, worse)


def test_a_tie_group_gives_tie_judgements_and_beats_what_is_below(project, annotator, tmp_path):
    _ranking_mode(project, allow_ties=True)
    _import(project, tmp_path, 1, size=4)
    assignment = ranking_assignment_next_for(annotator=annotator, project=project)
    w, x, y, z = _ids(assignment)

    ranking_submit(assignment=assignment, annotator=annotator, order=[[w], [x, y], [z]])

    assert Judgement.objects.filter(user=annotator).count() == 6
    assert _pair(x, y).judgements.get().choice == "tie"
    for better, worse in [(w, x), (w, y), (w, z), (x, z), (y, z)]:
        comparison = _pair(better, worse)
        assert comparison.judgements.get().choice == _stored(comparison, better, worse)


def test_top_k_ranks_the_first_k_and_leaves_the_rest_unpaired(project, annotator, tmp_path):
    _ranking_mode(project, top_k=2)
    _import(project, tmp_path, 1, size=5)
    assignment = ranking_assignment_next_for(annotator=annotator, project=project)
    first, second, *rest = _ids(assignment)

    made = ranking_submit(assignment=assignment, annotator=annotator, order=[[first], [second]])

    assert (made.order, made.top_k) == ([[first], [second]], 2)
    judged = Judgement.objects.filter(user=annotator)
    # 1 pair between the two ranked, 2 x 3 between them and the unranked, none among these.
    assert judged.count() == 1 + 2 * 3
    for better in (first, second):
        for worse in rest:
            comparison = _pair(better, worse)
            assert comparison.judgements.get().choice == _stored(comparison, better, worse)
    for x, y in itertools.combinations(rest, 2):
        comparison = _pair(x, y)
        assert not comparison.judgements.exists()
        assert (comparison.human_judgement_count, comparison.status) == (0, "pending")


def test_top_k_still_accepts_a_full_order(project, annotator, tmp_path):
    _ranking_mode(project, top_k=1)
    _import(project, tmp_path, 1, size=3)
    assignment = ranking_assignment_next_for(annotator=annotator, project=project)
    made = ranking_submit(
        assignment=assignment, annotator=annotator, order=[[c] for c in _ids(assignment)]
    )
    assert made.top_k is None
    assert Judgement.objects.filter(user=annotator).count() == 3


@pytest.mark.parametrize(
    ("schema", "order", "message"),
    [
        ({}, lambda ids: [[ids[0]], [ids[1]]], "Place every candidate"),
        ({}, lambda ids: [[ids[0]], [ids[1]], [ids[2]], [ids[0]]], "twice"),
        ({"allow_ties": True}, lambda ids: [[ids[0], ids[0]], [ids[1]], [ids[2]]], "twice"),
        ({}, lambda ids: [[ids[0]], [ids[1]], [ids[2]], [999_999]], "not in this item"),
        ({}, lambda ids: [[ids[0]], [ids[1], ids[2]]], "does not allow ties"),
        ({"allow_ties": False}, lambda ids: [[ids[0], ids[1], ids[2]]], "does not allow ties"),
        ({}, lambda ids: [[ids[0]], [], [ids[1]], [ids[2]]], "one or more"),
        ({}, lambda ids: [], "Order the candidates"),
        ({}, lambda ids: [[str(ids[0])], [ids[1]], [ids[2]]], "not in this item"),
        ({"top_k": 2}, lambda ids: [[ids[0]]], "top 2"),
    ],
)
def test_bad_orders_are_refused_and_write_nothing(
    project, annotator, tmp_path, schema, order, message
):
    _ranking_mode(project, **schema)
    _import(project, tmp_path, 1, size=3)
    assignment = ranking_assignment_next_for(annotator=annotator, project=project)

    with pytest.raises(ApplicationError, match=message):
        ranking_submit(assignment=assignment, annotator=annotator, order=order(_ids(assignment)))

    assert not RankingJudgement.objects.exists()
    assert not Judgement.objects.filter(user__isnull=False).exists()
    assignment.refresh_from_db()
    assert assignment.state == Assignment.State.LEASED


def test_a_candidate_of_another_ranking_is_foreign(project, annotator, tmp_path):
    _ranking_mode(project)
    _import(project, tmp_path, 2, size=3)
    assignment = ranking_assignment_next_for(annotator=annotator, project=project)
    other = Ranking.objects.exclude(pk=assignment.ranking_id).get()
    foreign = other.candidates.first().id
    ids = _ids(assignment)

    with pytest.raises(ApplicationError, match="not in this item"):
        ranking_submit(
            assignment=assignment, annotator=annotator, order=[[ids[0]], [ids[1]], [foreign]]
        )
    assert not RankingJudgement.objects.exists()


def test_submitting_twice_makes_one_ranking_and_one_set_of_pairs(project, annotator, tmp_path):
    _ranking_mode(project)
    _import(project, tmp_path, 1, size=3)
    assignment = ranking_assignment_next_for(annotator=annotator, project=project)
    order = [[c] for c in _ids(assignment)]

    first = ranking_submit(assignment=assignment, annotator=annotator, order=order)
    again = ranking_submit(assignment=assignment, annotator=annotator, order=list(reversed(order)))

    assert first == again
    assert RankingJudgement.objects.count() == 1
    assert Judgement.objects.filter(user=annotator).count() == 3
    assert set(Comparison.objects.values_list("human_judgement_count", flat=True)) == {1}


# ---------------------------------------------------------------- the queue


def test_overlap_k_people_rank_each_ranking_and_labels_wait_for_all(project, tmp_path):
    _ranking_mode(project, allow_ties=True)
    project.overlap = 2
    project.save()
    _import(project, tmp_path, 1, size=3)
    ann, bob, cat = (UserFactory(username=n) for n in ("ann", "bob", "cat"))

    first = ranking_assignment_next_for(annotator=ann, project=project)
    second = ranking_assignment_next_for(annotator=bob, project=project)
    assert first.ranking_id == second.ranking_id
    assert ranking_assignment_next_for(annotator=cat, project=project) is None  # slots full
    # A live lease is resumed, not doubled.
    assert ranking_assignment_next_for(annotator=ann, project=project) == first

    ids = _ids(first)
    ranking_submit(assignment=first, annotator=ann, order=[[i] for i in ids])
    assert set(Comparison.objects.values_list("status", flat=True)) == {"pending"}
    assert set(Comparison.objects.values_list("human_judgement_count", flat=True)) == {1}
    # ann never gets it again.
    assert ranking_assignment_next_for(annotator=ann, project=project) is None

    ranking_submit(assignment=second, annotator=bob, order=[[ids[0]], [ids[1], ids[2]]])
    assert set(Comparison.objects.values_list("human_judgement_count", flat=True)) == {2}
    agreed = _pair(ids[0], ids[1])
    assert (agreed.status, agreed.label) == ("labelled", _stored(agreed, ids[0], ids[1]))
    split = _pair(ids[1], ids[2])
    assert (split.status, split.label) == ("disputed", None)
    late = RankingAssignment.objects.create(
        ranking=first.ranking, annotator=cat, leased_until=timezone.now() + timedelta(minutes=5)
    )
    with pytest.raises(ApplicationError, match="all its labels"):
        ranking_submit(assignment=late, annotator=cat, order=[[i] for i in ids])


def test_an_expired_lease_frees_its_slot_and_a_skip_is_final(project, annotator, tmp_path):
    _ranking_mode(project)
    _import(project, tmp_path, 1, size=3)
    other = UserFactory(username="other")
    lease = ranking_assignment_next_for(annotator=annotator, project=project)
    assert ranking_assignment_next_for(annotator=other, project=project) is None
    RankingAssignment.objects.filter(pk=lease.pk).update(
        leased_until=timezone.now() - timedelta(seconds=1)
    )
    taken = ranking_assignment_next_for(annotator=other, project=project)
    assert taken.ranking_id == lease.ranking_id

    ranking_skip(assignment=taken, annotator=other, reason="unreadable")
    taken.refresh_from_db()
    assert (taken.state, taken.skip_reason) == ("skipped", "unreadable")
    assert ranking_assignment_next_for(annotator=other, project=project) is None
    # The expired one is not resumed and its ranking is not offered to the same person twice.
    assert ranking_assignment_next_for(annotator=annotator, project=project) is None


def test_someone_else_cannot_submit_or_skip_my_lease(project, annotator, tmp_path):
    _ranking_mode(project)
    _import(project, tmp_path, 1, size=3)
    lease = ranking_assignment_next_for(annotator=annotator, project=project)
    other = UserFactory(username="other")
    with pytest.raises(ApplicationError, match="not yours"):
        ranking_submit(assignment=lease, annotator=other, order=[[i] for i in _ids(lease)])
    with pytest.raises(ApplicationError, match="not yours"):
        ranking_skip(assignment=lease, annotator=other)
    assert not RankingJudgement.objects.exists()


def test_an_earlier_pairwise_judgement_of_the_same_person_stands(project, annotator):
    _ranking_mode(project)
    ranking, (x, y, z) = _bare_ranking(project, ["x", "y", "z"])
    small, large = sorted([x, y], key=lambda c: c.content_hash)
    earlier = Comparison.objects.create(
        project=project, prompt=ranking.prompt, candidate_a=small, candidate_b=large
    )
    Judgement.objects.create(
        comparison=earlier, source_kind="human", user=annotator, source_name="a", choice="tie",
        idempotency_key="earlier",
    )  # fmt: skip
    lease = ranking_assignment_next_for(annotator=annotator, project=project)

    ranking_submit(assignment=lease, annotator=annotator, order=[[x.id], [y.id], [z.id]])

    assert earlier.judgements.get().choice == "tie"
    assert Judgement.objects.filter(user=annotator).count() == 3


# ---------------------------------------------------------------- views


def test_the_label_page_serves_the_ranking_in_its_shuffled_order(
    client, project, annotator, tmp_path
):
    _ranking_mode(project, allow_ties=True)
    _import(project, tmp_path, 1, size=3)
    client.force_login(annotator)

    response = client.get(_label(project))

    assert response.status_code == 200
    lease = RankingAssignment.objects.get(annotator=annotator)
    html = response.content.decode()
    texts = [Candidate.objects.get(pk=i).text for i in _ids(lease)]
    positions = [html.index(f"<p>{t}</p>") for t in texts]
    assert positions == sorted(positions)
    assert f'data-key="{lease.key}"' in html
    assert "Prompt 0" in html
    assert not Assignment.objects.exists()  # no pairwise lease in ranking mode

    fragment = client.get(_label(project), headers=HX).content.decode()
    assert fragment.lstrip().startswith('<section id="ranking"')


def test_posting_an_order_records_it_and_serves_the_next(client, project, annotator, tmp_path):
    _ranking_mode(project, allow_ties=True)
    _import(project, tmp_path, 2, size=3)
    client.force_login(annotator)
    client.get(_label(project))
    lease = RankingAssignment.objects.get(annotator=annotator)
    a, b, c = _ids(lease)
    order = [[b], [a, c]]

    response = client.post(
        _submit(project, lease), {"order": json.dumps(order), "time_spent_ms": "4200"}, headers=HX
    )

    assert response.status_code == 200
    made = RankingJudgement.objects.get()
    assert (made.order, made.time_spent_ms, made.assignment) == (order, 4200, lease)
    nxt = RankingAssignment.objects.get(annotator=annotator, state="leased")
    assert f'data-key="{nxt.key}"' in response.content.decode()
    assert _pair(a, c).judgements.get().choice == "tie"
    # Without htmx: back to the page.
    replay = client.post(_submit(project, lease), {"order": json.dumps(order)})
    assert (replay.status_code, replay.url) == (302, _label(project))
    assert RankingJudgement.objects.count() == 1


def _shown_key(html: str) -> str:
    return html.split('id="ranking"')[1].split('data-key="')[1].split('"')[0]


def test_prefetch_leases_the_following_ranking_once(client, project, annotator, tmp_path):
    _ranking_mode(project)
    _import(project, tmp_path, 3, size=3)
    client.force_login(annotator)
    current = _shown_key(client.get(_label(project)).content.decode())

    first = client.get(_label(project) + f"?prefetch={current}")
    again = client.get(_label(project) + f"?prefetch={current}")

    assert first.status_code == 200
    html = first.content.decode()
    assert html.lstrip().startswith('<section id="ranking"')
    following = _shown_key(html)
    assert following not in ("", current)
    assert _shown_key(again.content.decode()) == following
    lease = int(html.split('data-lease-seconds="')[1].split('"')[0])
    assert 500 < lease <= 600
    assert RankingAssignment.objects.filter(annotator=annotator).count() == 2
    # The answer behind the prefetched ranking gets only the counters back; the page's
    # next ranking (the oldest open lease) is the prefetched one: nothing more is leased.
    shown = RankingAssignment.objects.get(key=current)
    response = client.post(
        _submit(project, shown),
        {"order": json.dumps([[i] for i in _ids(shown)]), "next": "progress"},
        headers=HX,
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<span class="progress" data-progress>')
    assert "in all 1" in body
    assert "/submit/" not in body
    assert RankingJudgement.objects.get().assignment == shown
    assert RankingAssignment.objects.filter(annotator=annotator).count() == 2
    assert _shown_key(client.get(_label(project), headers=HX).content.decode()) == following


def test_a_skip_behind_a_prefetched_ranking_serves_that_ranking(
    client, project, annotator, tmp_path
):
    _ranking_mode(project)
    _import(project, tmp_path, 2, size=3)
    client.force_login(annotator)
    current = _shown_key(client.get(_label(project)).content.decode())
    following = _shown_key(client.get(_label(project) + f"?prefetch={current}").content.decode())
    skipped = RankingAssignment.objects.get(key=current)

    response = client.post(
        _skip(project, skipped), {"reason": "unclear", "next": "progress"}, headers=HX
    )

    assert response.status_code == 200
    assert _shown_key(response.content.decode()) == following
    skipped.refresh_from_db()
    assert (skipped.state, skipped.skip_reason) == ("skipped", "unclear")
    assert RankingAssignment.objects.filter(annotator=annotator).count() == 2


def test_prefetch_needs_a_key_of_ones_own(client, project, annotator, tmp_path):
    _ranking_mode(project)
    _import(project, tmp_path, 2, size=3)
    lease = ranking_assignment_next_for(annotator=annotator, project=project)
    colleague = UserFactory(username="colleague")
    project.memberships.create(user=colleague, role="annotator")
    client.force_login(colleague)

    assert client.get(_label(project) + f"?prefetch={lease.key}").status_code == 404
    assert client.get(_label(project) + "?prefetch=not-a-uuid").status_code == 404
    assert not RankingAssignment.objects.filter(annotator=colleague).exists()


@pytest.mark.parametrize("posted", ["", "not json", '{"a": 1}', "[1, 2, 3]"])
def test_a_malformed_order_is_a_form_error(client, project, annotator, tmp_path, posted):
    _ranking_mode(project)
    _import(project, tmp_path, 1, size=3)
    client.force_login(annotator)
    client.get(_label(project))
    lease = RankingAssignment.objects.get(annotator=annotator)

    response = client.post(_submit(project, lease), {"order": posted}, headers=HX)

    assert response.status_code == 400
    assert "Order the candidates, best first." in response.content.decode()
    assert not RankingJudgement.objects.exists()


def test_a_refused_order_shows_the_reason(client, project, annotator, tmp_path):
    _ranking_mode(project)
    _import(project, tmp_path, 1, size=3)
    client.force_login(annotator)
    client.get(_label(project))
    lease = RankingAssignment.objects.get(annotator=annotator)
    a, b, c = _ids(lease)

    response = client.post(_submit(project, lease), {"order": json.dumps([[a, b], [c]])})

    assert response.status_code == 400
    assert "This project does not allow ties." in response.content.decode()
    assert not RankingJudgement.objects.exists()


def test_skipping_from_the_page(client, project, annotator, tmp_path):
    _ranking_mode(project)
    _import(project, tmp_path, 1, size=3)
    client.force_login(annotator)
    client.get(_label(project))
    lease = RankingAssignment.objects.get(annotator=annotator)

    response = client.post(_skip(project, lease), {"reason": "off topic"}, headers=HX)

    assert response.status_code == 200
    assert "Nothing is waiting for you" in response.content.decode()
    lease.refresh_from_db()
    assert (lease.state, lease.skip_reason) == ("skipped", "off topic")


def test_outsiders_and_other_annotators_get_404(client, project, annotator, outsider, tmp_path):
    _ranking_mode(project)
    _import(project, tmp_path, 1, size=3)
    lease = ranking_assignment_next_for(annotator=annotator, project=project)
    order = json.dumps([[i] for i in _ids(lease)])

    client.force_login(outsider)
    assert client.get(_label(project)).status_code == 404
    assert client.post(_submit(project, lease), {"order": order}).status_code == 404
    assert client.post(_skip(project, lease), {}).status_code == 404

    colleague = UserFactory(username="colleague")
    project.memberships.create(user=colleague, role="annotator")
    client.force_login(colleague)
    assert client.post(_submit(project, lease), {"order": order}).status_code == 404
    assert client.post(_skip(project, lease), {}).status_code == 404
    # A pairwise lease's key is no ranking key, even for its owner.
    comparison_make(project)
    _ranking_mode(project, mode="pairwise")
    pairwise = assignment_next_for(annotator=annotator, project=project)
    _ranking_mode(project)
    client.force_login(annotator)
    assert client.post(_submit(project, pairwise), {"order": order}).status_code == 404

    assert not RankingJudgement.objects.exists()
    lease.refresh_from_db()
    assert lease.state == "leased"
