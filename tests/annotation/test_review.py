"""The reviewer's page: who may see it, what it lists, and setting the final label."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from annotation.forms import LabelResolveForm
from annotation.models import Judgement, LabelResolution
from annotation.selectors import comparison_get_for_review
from annotation.services.labels import comparison_labels_refresh
from annotation.services.review import comparison_label_resolve
from core.exceptions import ApplicationError
from tests.factories import PASSWORD, MembershipFactory, UserFactory
from tests.factories import comparison_make as _comparison
from tests.factories import judgement_make as _judge

pytestmark = pytest.mark.django_db


def _login(client, user) -> None:
    assert client.login(username=user.username, password=PASSWORD)


@pytest.fixture
def people(project):
    """Two more annotators of `project`, so that votes can split."""
    return [
        MembershipFactory(project=project, user=UserFactory(username=f"ann-{i}")).user
        for i in (1, 2)
    ]


@pytest.fixture
def split(project, people):
    comparison = _comparison(project, label="a", label_confidence=0.6)
    _judge(comparison, people[0], "a", strength=2, rationale="A is more accurate")
    _judge(comparison, people[1], "b", rationale="B is shorter")
    return comparison


def _review_url(project) -> str:
    return reverse("annotation:review", args=[project.slug])


def _resolve_url(project, comparison) -> str:
    return reverse("annotation:review_resolve", args=[project.slug, comparison.pk])


# ---------------------------------------------------------------- permissions


def test_anonymous_users_are_sent_to_login(client, project, split):
    for response in (
        client.get(_review_url(project)),
        client.post(_resolve_url(project, split), {"label": "b", "note": "n"}),
    ):
        assert response.status_code == 302
        assert response.url.startswith("/accounts/login/")
    assert not LabelResolution.objects.exists()


@pytest.mark.parametrize("persona", ["outsider", "annotator"])
def test_outsiders_and_annotators_get_404(client, project, split, persona, request):
    _login(client, request.getfixturevalue(persona))

    assert client.get(_review_url(project)).status_code == 404
    response = client.post(_resolve_url(project, split), {"label": "b", "note": "mine"})

    assert response.status_code == 404
    split.refresh_from_db()
    assert split.label == "a"
    assert not LabelResolution.objects.exists()


@pytest.mark.parametrize("persona", ["admin", "reviewer"])
def test_admins_and_reviewers_see_the_review_page(client, project, split, persona, request):
    _login(client, request.getfixturevalue(persona))

    response = client.get(_review_url(project))

    assert response.status_code == 200
    assert [c.pk for c in response.context["page"]] == [split.pk]


def test_resolve_takes_post_only(client, project, split, reviewer):
    _login(client, reviewer)

    assert client.get(_resolve_url(project, split)).status_code == 405


def test_comparison_of_another_project_is_404(client, project, other_project, reviewer, people):
    theirs = _comparison(other_project, label="a")
    _login(client, reviewer)

    response = client.post(_resolve_url(project, theirs), {"label": "b", "note": "not mine"})

    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.label == "a"
    assert not LabelResolution.objects.exists()


# ---------------------------------------------------------------- the list


def test_split_votes_and_gold_misses_are_listed_unanimous_ones_not(
    client, project, reviewer, people, split
):
    unanimous = _comparison(project)
    _judge(unanimous, people[0], "tie")
    _judge(unanimous, people[1], "tie")
    single = _comparison(project)
    _judge(single, people[0], "a")
    gold_miss = _comparison(project, is_gold=True, gold_label="a")
    _judge(gold_miss, people[0], "b")
    gold_hit = _comparison(project, is_gold=True, gold_label="a")
    _judge(gold_hit, people[0], "a")
    _judge(gold_hit, people[1], "a")
    # An AI that disagrees with the one human is not a disagreement between people.
    machine = _comparison(project)
    _judge(machine, people[0], "a")
    Judgement.objects.create(
        comparison=machine,
        source_kind=Judgement.SourceKind.AI,
        source_name="ai:judge",
        choice="b",
        idempotency_key=uuid.uuid4().hex,
    )
    _login(client, reviewer)

    response = client.get(_review_url(project))

    assert response.status_code == 200
    assert {c.pk for c in response.context["page"]} == {split.pk, gold_miss.pk}
    html = response.content.decode()
    assert f'id="comparison-{split.pk}"' in html
    assert f'id="comparison-{gold_miss.pk}"' in html
    assert f'id="comparison-{unanimous.pk}"' not in html
    assert "gold miss" in html


def test_each_judgement_is_shown_with_annotator_choice_strength_and_rationale(
    client, project, reviewer, split
):
    _login(client, reviewer)

    html = client.get(_review_url(project)).content.decode()

    assert "ann-1" in html
    assert "ann-2" in html
    assert "A is more accurate" in html
    assert "B is shorter" in html
    assert "strong" in html  # strength 2 on the default scale slight, clear, strong
    assert split.prompt.text in html
    assert "first answer" in html
    assert "second answer" in html


def test_candidate_text_is_escaped(client, project, reviewer, people):
    comparison = _comparison(project, a="<script>alert(1)</script>", b="<b>bold</b>")
    _judge(comparison, people[0], "a", rationale="<img src=x onerror=alert(2)>")
    _judge(comparison, people[1], "b")
    _login(client, reviewer)

    html = client.get(_review_url(project)).content.decode()

    assert "<script>alert(1)" not in html
    assert "&lt;script&gt;alert(1)" in html
    assert "<b>bold</b>" not in html
    assert "<img src=x" not in html


def test_list_is_paginated_newest_first(client, project, reviewer, people):
    start = timezone.now() - dt.timedelta(days=1)
    comparisons = []
    for i in range(51):
        comparison = _comparison(project)
        for user, choice in zip(people, "ab", strict=True):
            _judge(comparison, user, choice)
        Judgement.objects.filter(comparison=comparison).update(
            created_at=start + dt.timedelta(minutes=i)
        )
        comparisons.append(comparison)
    _login(client, reviewer)

    first = client.get(_review_url(project))
    second = client.get(_review_url(project), {"page": 2})

    assert [c.pk for c in first.context["page"]] == [c.pk for c in comparisons[:0:-1]]
    assert [c.pk for c in second.context["page"]] == [comparisons[0].pk]
    assert "Page 1 of 2" in first.content.decode()


# ---------------------------------------------------------------- resolving


def test_resolving_sets_the_label_and_records_the_previous_one(client, project, reviewer, split):
    _login(client, reviewer)

    response = client.post(
        _resolve_url(project, split) + "?page=1",
        {"label": "b", "note": " B answers the question. "},
    )

    assert response.status_code == 302
    assert response.url == f"{_review_url(project)}?page=1#comparison-{split.pk}"
    split.refresh_from_db()
    assert (split.label, split.label_confidence, split.status) == ("b", 1.0, "labelled")
    resolution = LabelResolution.objects.get()
    assert (resolution.comparison, resolution.reviewer) == (split, reviewer)
    assert (resolution.previous_label, resolution.label) == ("a", "b")
    assert resolution.note == "B answers the question."


def test_every_resolution_is_kept_and_shown_as_history(client, project, reviewer, admin, split):
    _login(client, reviewer)
    client.post(_resolve_url(project, split), {"label": "b", "note": "first look"})
    _login(client, admin)
    client.post(_resolve_url(project, split), {"label": "tie", "note": "both fine"})

    response = client.get(_review_url(project))

    history = list(LabelResolution.objects.order_by("id").values_list("previous_label", "label"))
    assert history == [("a", "b"), ("b", "tie")]
    split.refresh_from_db()
    assert split.label == "tie"
    html = response.content.decode()
    assert "first look" in html
    assert "both fine" in html
    assert html.index("both fine") < html.index("first look")  # newest first


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"label": "c", "note": "why"}, "Select a valid choice"),
        ({"label": "", "note": "why"}, "This field is required"),
        ({"label": "b", "note": "   "}, "This field is required"),
        ({"label": "b"}, "This field is required"),
    ],
)
def test_bad_label_or_empty_note_is_400_and_changes_nothing(
    client, project, reviewer, split, data, error
):
    _login(client, reviewer)

    response = client.post(_resolve_url(project, split), data)

    assert response.status_code == 400
    assert error in response.content.decode()
    split.refresh_from_db()
    assert (split.label, split.label_confidence) == ("a", 0.6)
    assert not LabelResolution.objects.exists()


def test_a_label_the_schema_forbids_is_refused(client, project, reviewer, split):
    # The default schema allows ties but not both-bad; a reviewer may not set it either.
    _login(client, reviewer)
    page = client.get(reverse("annotation:review", args=[project.slug])).content.decode()
    assert 'value="both_bad"' not in page
    assert 'value="tie"' in page

    response = client.post(_resolve_url(project, split), {"label": "both_bad", "note": "why"})

    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    split.refresh_from_db()
    assert (split.label, split.label_confidence) == ("a", 0.6)
    assert not LabelResolution.objects.exists()
    with pytest.raises(ApplicationError, match="this project's labels"):
        comparison_label_resolve(comparison=split, reviewer=reviewer, label="both_bad", note="x")
    assert not LabelResolution.objects.exists()


def test_htmx_resolve_returns_the_updated_block(client, project, reviewer, split):
    _login(client, reviewer)

    response = client.post(
        _resolve_url(project, split),
        {"label": "tie", "note": "equally good"},
        headers={"HX-Request": "true"},
    )

    assert response.status_code == 200
    html = response.content.decode().strip()
    assert html.startswith(f'<article id="comparison-{split.pk}"')
    assert "<html" not in html
    assert 'data-label="tie"' in html
    assert "equally good" in html
    split.refresh_from_db()
    assert split.label == "tie"
    assert LabelResolution.objects.get().previous_label == "a"


def test_htmx_resolve_with_an_empty_note_returns_the_block_with_the_error(
    client, project, reviewer, split
):
    _login(client, reviewer)

    response = client.post(
        _resolve_url(project, split), {"label": "b", "note": ""}, headers={"HX-Request": "true"}
    )

    assert response.status_code == 400
    html = response.content.decode().strip()
    assert html.startswith(f'<article id="comparison-{split.pk}"')
    assert "This field is required" in html
    assert not LabelResolution.objects.exists()


def test_the_comparison_block_renders_on_its_own(project, split, reviewer):
    comparison = comparison_get_for_review(project=project, comparison_id=split.pk)

    html = render_to_string(
        "annotation/review.html#comparison",
        {
            "project": project,
            "comparison": comparison,
            "form": LabelResolveForm(comparison=comparison),
        },
    )

    assert f'hx-post="{_resolve_url(project, split)}"' in html
    assert "first answer" in html
    assert "second answer" in html
    assert f'id="resolve-{split.pk}-label_0"' in html


def test_new_judgements_do_not_overturn_a_resolution(client, project, reviewer, people, split):
    _login(client, reviewer)
    client.post(_resolve_url(project, split), {"label": "b", "note": "B is right"})
    _judge(split, UserFactory(username="late"), "a", strength=2)

    comparison_labels_refresh(comparison_ids=[split.pk])

    split.refresh_from_db()
    assert (split.label, split.label_confidence, split.status) == ("b", 1.0, "labelled")
