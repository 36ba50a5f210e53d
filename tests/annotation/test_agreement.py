"""Krippendorff's alpha over human judgements: hand-checked values, undefined cases, gold
accuracy, and what the project page shows to whom."""

from __future__ import annotations

import uuid

import krippendorff
import numpy as np
import pytest
from django.urls import reverse

from annotation.models import Comparison, Judgement
from annotation.services.agreement import agreement_compute, project_agreement
from tests.factories import PASSWORD, UserFactory
from tests.factories import comparison_make as _comparison
from tests.factories import judgement_make as _judge

# Three annotators, four comparisons (1 = u1, 2 = u2, 3 = u3):
#   c1: a a a    c2: b b a    c3: tie tie -    c4: - - b (nobody else: not pairable)
# Pairable values n = 8: a 4, b 2, tie 2.
#   D_e = (8^2 - (4^2 + 2^2 + 2^2)) / (8 * 7) = 40 / 56 = 5/7
#   Per pairable value, the share of the others on its comparison who chose differently:
#   c1: 0 0 0; c2: u1 1/2, u2 1/2, u3 2/2; c3: 0 0.   D_o = 2/8 = 1/4
#   alpha = 1 - (1/4) / (5/7) = 13/20
#   u1 and u2: D_o = (1/2) / 3 = 1/6 -> alpha = 1 - (1/6) / (5/7) = 23/30
#   u3:        D_o = 1 / 2         -> alpha = 1 - (1/2) / (5/7) = 3/10
# Krippendorff's coincidence form gives the same: o_aa = 3, o_bb = 1, o_tt = 2,
#   alpha = ((n-1) sum o_cc - sum n_c (n_c-1)) / (n (n-1) - sum n_c (n_c-1))
#         = (7 * 6 - 16) / (56 - 16) = 26/40 = 13/20.
HAND = [
    (1, 1, "a", None), (1, 2, "a", None), (1, 3, "a", None),
    (2, 1, "b", None), (2, 2, "b", None), (2, 3, "a", None),
    (3, 1, "tie", None), (3, 2, "tie", None),
    (4, 3, "b", None),
]  # fmt: skip


def _by_user(agreement):
    return {a.user_id: a for a in agreement.annotators}


def test_alpha_matches_the_hand_computed_value():
    agreement = agreement_compute(judgements=HAND)

    assert agreement.alpha == pytest.approx(13 / 20)
    assert (agreement.units, agreement.overlapping, agreement.judgements) == (3, 8, 9)


def test_per_annotator_alpha_matches_the_hand_computed_values():
    people = _by_user(agreement_compute(judgements=HAND))

    assert people[1].alpha == pytest.approx(23 / 30)
    assert people[2].alpha == pytest.approx(23 / 30)
    assert people[3].alpha == pytest.approx(3 / 10)
    assert (people[3].judgements, people[3].overlapping) == (3, 2)


def test_overall_alpha_is_the_overlap_weighted_mean_of_per_annotator_alphas():
    rng = np.random.default_rng(0)
    rows = [
        (
            int(c),
            int(u),
            str(rng.choice(["a", "b", "tie", "both_bad"], p=[0.5, 0.3, 0.15, 0.05])),
            None,
        )
        for c in range(60)
        for u in rng.choice(8, size=int(rng.integers(1, 5)), replace=False)
    ]
    agreement = agreement_compute(judgements=rows)
    weighted = sum(a.alpha * a.overlapping for a in agreement.annotators if a.overlapping)

    assert weighted / agreement.overlapping == pytest.approx(agreement.alpha)


def test_alpha_agrees_with_krippendorff_on_a_coder_by_unit_matrix():
    agreement = agreement_compute(judgements=HAND)
    nan = np.nan
    # Rows are annotators, columns comparisons; codes 0 a, 1 b, 2 tie.
    matrix = [[0, 1, 2, nan], [0, 1, 2, nan], [0, 0, nan, 1]]

    expected = krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal")
    assert agreement.alpha == pytest.approx(expected)


def test_perfect_agreement_is_one():
    rows = [(1, 1, "a", None), (1, 2, "a", None), (2, 1, "tie", None), (2, 2, "tie", None)]

    agreement = agreement_compute(judgements=rows)

    assert agreement.alpha == 1.0
    assert [a.alpha for a in agreement.annotators] == [1.0, 1.0]


def test_tie_is_its_own_category_not_half_a_vote():
    # Two people, two comparisons: (a, b) and (tie, a). Nominal: both are plain misses,
    # so alpha = 1 - D_o/D_e with D_o = 1 and D_e = (16 - (4 + 1 + 1)) / 12 = 10/12.
    rows = [(1, 1, "a", None), (1, 2, "b", None), (2, 1, "tie", None), (2, 2, "a", None)]

    assert agreement_compute(judgements=rows).alpha == pytest.approx(1 - 12 / 10)


def test_alpha_is_none_without_overlap():
    rows = [(1, 1, "a", None), (2, 2, "b", None), (3, 1, "tie", None)]

    agreement = agreement_compute(judgements=rows)

    assert agreement.alpha is None
    assert agreement.units == 0
    assert all(a.alpha is None and a.overlapping == 0 for a in agreement.annotators)


def test_alpha_is_none_not_nan_when_every_answer_is_the_same():
    # Alpha is 0/0 here: there is no variation to agree or disagree about.
    rows = [(1, 1, "a", None), (1, 2, "a", None), (2, 1, "a", None), (2, 2, "a", None)]

    agreement = agreement_compute(judgements=rows)

    assert agreement.alpha is None
    assert [a.alpha for a in agreement.annotators] == [None, None]


def test_alpha_is_none_with_no_judgements():
    agreement = agreement_compute(judgements=[])

    assert agreement.alpha is None
    assert (agreement.units, agreement.judgements, agreement.annotators) == (0, 0, [])


def test_gold_accuracy_counts_choices_equal_to_the_gold_label():
    rows = [
        (1, 1, "a", "a"), (1, 2, "b", "a"),
        (2, 1, "b", "b"), (2, 2, "b", "b"),
        (3, 1, "a", None), (3, 2, "b", None),
    ]  # fmt: skip

    people = _by_user(agreement_compute(judgements=rows))

    assert (people[1].gold_correct, people[1].gold_judged, people[1].gold_accuracy) == (2, 2, 1.0)
    assert (people[2].gold_correct, people[2].gold_judged, people[2].gold_accuracy) == (1, 2, 0.5)


def test_gold_accuracy_is_none_without_gold_judgements():
    people = _by_user(agreement_compute(judgements=HAND))

    assert people[1].gold_judged == 0
    assert people[1].gold_accuracy is None


# ---------------------------------------------------------------- from the database


@pytest.fixture
def judged(project, other_project, admin, reviewer, annotator):
    """HAND in the database, u1 = annotator, u2 = reviewer, u3 = admin; plus judgements
    that must not count: an AI's, and another project's."""
    users = {1: annotator, 2: reviewer, 3: admin}
    comparisons = {n: _comparison(project) for n in range(1, 5)}
    for cid, uid, choice, _ in HAND:
        _judge(comparisons[cid], users[uid], choice)
    Judgement.objects.create(
        comparison=comparisons[1],
        source_kind=Judgement.SourceKind.AI,
        source_name="ai:judge",
        choice="b",
        idempotency_key=uuid.uuid4().hex,
    )
    elsewhere = _comparison(other_project)
    _judge(elsewhere, annotator, "a")
    _judge(elsewhere, UserFactory(username="zed"), "b")
    return comparisons


@pytest.mark.django_db
def test_project_agreement_counts_human_judgements_of_the_project_only(
    project, judged, django_assert_num_queries
):
    with django_assert_num_queries(2):
        agreement = project_agreement(project=project)

    assert agreement.alpha == pytest.approx(13 / 20)
    assert (agreement.units, agreement.judgements) == (3, 9)
    assert [(a.username, round(a.alpha, 4)) for a in agreement.annotators] == [
        ("alice-admin", 0.3),
        ("anna-annotator", round(23 / 30, 4)),
        ("rita-reviewer", round(23 / 30, 4)),
    ]


@pytest.mark.django_db
def test_project_agreement_reports_gold_accuracy(project, judged, annotator, admin):
    Comparison.objects.filter(pk=judged[2].pk).update(is_gold=True, gold_label="b")

    people = {a.username: a for a in project_agreement(project=project).annotators}

    assert (people["anna-annotator"].gold_correct, people["anna-annotator"].gold_judged) == (1, 1)
    assert (people["alice-admin"].gold_correct, people["alice-admin"].gold_judged) == (0, 1)


@pytest.mark.django_db
@pytest.mark.parametrize("persona", ["admin", "reviewer"])
def test_admins_and_reviewers_see_each_annotators_agreement(
    client, project, judged, persona, request
):
    user = request.getfixturevalue(persona)
    assert client.login(username=user.username, password=PASSWORD)

    response = client.get(reverse("annotation:project", args=[project.slug]))

    assert response.status_code == 200
    assert response.context["agreement"].alpha == pytest.approx(13 / 20)
    html = response.content.decode()
    assert "0.650" in html
    assert "anna-annotator" in html
    assert "rita-reviewer" in html
    assert "0.767" in html  # anna's and rita's alpha with the others
    assert reverse("annotation:review", args=[project.slug]) in html


@pytest.mark.django_db
def test_annotators_see_the_project_alpha_but_not_other_peoples(client, project, judged, annotator):
    assert client.login(username=annotator.username, password=PASSWORD)

    response = client.get(reverse("annotation:project", args=[project.slug]))

    assert response.status_code == 200
    html = response.content.decode()
    assert "0.650" in html
    assert response.context["annotator_agreement"] is None
    assert "rita-reviewer" not in html
    assert "alice-admin" not in html
    assert "0.300" not in html
    assert "0.767" not in html
    assert reverse("annotation:review", args=[project.slug]) not in html


@pytest.mark.django_db
def test_project_page_says_when_there_is_not_enough_overlap(client, project, admin):
    _judge(_comparison(project), admin, "a")
    assert client.login(username=admin.username, password=PASSWORD)

    response = client.get(reverse("annotation:project", args=[project.slug]))

    assert response.status_code == 200
    assert response.context["agreement"].alpha is None
    assert "Not enough overlap yet" in response.content.decode()
