"""Data rules held by the database, and the label schema's validation."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from annotation.models import Candidate, Comparison, Judgement, Prompt
from annotation.schema import label_schema_default, label_schema_validate

pytestmark = pytest.mark.django_db


@pytest.fixture
def pair(project):
    prompt = Prompt.objects.create(project=project, content_hash="p", text="Q")
    a = Candidate.objects.create(prompt=prompt, content_hash="a", text="A")
    b = Candidate.objects.create(prompt=prompt, content_hash="b", text="B")
    return prompt, a, b


def _violates(**kwargs) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        kwargs.pop("model").objects.create(**kwargs)


def test_a_comparison_needs_two_distinct_candidates_once(project, pair):
    prompt, a, b = pair
    Comparison.objects.create(project=project, prompt=prompt, candidate_a=a, candidate_b=b)
    _violates(model=Comparison, project=project, prompt=prompt, candidate_a=a, candidate_b=a)
    _violates(model=Comparison, project=project, prompt=prompt, candidate_a=a, candidate_b=b)
    _violates(
        model=Comparison, project=project, prompt=prompt, candidate_a=b, candidate_b=a,
        is_gold=True,
    )  # fmt: skip
    assert Comparison.objects.count() == 1


def test_judgement_sources_are_consistent_and_unique(project, pair, annotator):
    prompt, a, b = pair
    c = Comparison.objects.create(project=project, prompt=prompt, candidate_a=a, candidate_b=b)
    Judgement.objects.create(
        comparison=c, source_kind="human", user=annotator, source_name="anna", choice="a",
        idempotency_key="k1",
    )  # fmt: skip
    # A human judgement without a user, or an import with one, is refused.
    _violates(
        model=Judgement,
        comparison=c,
        source_kind="human",
        source_name="x",
        choice="a",
        idempotency_key="k2",
    )
    _violates(
        model=Judgement,
        comparison=c,
        source_kind="import",
        user=annotator,
        source_name="x",
        choice="a",
        idempotency_key="k3",
    )
    # One judgement per person, and the same key never makes a second row.
    _violates(
        model=Judgement,
        comparison=c,
        source_kind="human",
        user=annotator,
        source_name="anna",
        choice="b",
        idempotency_key="k4",
    )
    _violates(
        model=Judgement,
        comparison=c,
        source_kind="import",
        source_name="import:f",
        choice="b",
        idempotency_key="k1",
    )
    assert Judgement.objects.count() == 1


def test_candidate_kind_must_match_its_content(pair):
    prompt, _, _ = pair
    _violates(model=Candidate, prompt=prompt, kind="image", content_hash="i", text="")
    _violates(model=Candidate, prompt=prompt, kind="text", content_hash="t", file="x.png")


def test_default_label_schema_is_valid():
    label_schema_validate(label_schema_default())
    label_schema_validate(
        {
            "mode": "pairwise",
            "allow_tie": True,
            "allow_both_bad": True,
            "strength": ["slight", "clear", "strong"],
            "aspects": [
                {"name": n, "min": 0, "max": 4}
                for n in ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
            ],
            "rationale": "required",
        }
    )
    label_schema_validate({"mode": "ranking", "top_k": 3, "allow_ties": True})


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ([], "must be a JSON object"),
        ({"mode": "stars"}, "'mode' must be"),
        ({"allow_tie": "yes"}, "'allow_tie' must be true or false"),
        ({"strength": ["a", "a"]}, "must be distinct"),
        (
            {"aspects": [{"name": "x", "min": 4, "max": 0}]},
            "aspects[0]' needs integer 'min' < 'max'",
        ),
        ({"aspects": [{"name": "x", "max": 4}, {"name": "x", "max": 4}]}, "declared twice"),
        ({"rationale": "sometimes"}, "'rationale' must be one of"),
        ({"mode": "pairwise", "top_k": 2}, "for ranking mode only"),
        ({"colour": "red"}, "Unknown label schema field(s): colour"),
    ],
)
def test_bad_label_schemas_are_refused_with_the_field(schema, message):
    with pytest.raises(ValidationError) as info:
        label_schema_validate(schema)
    assert message in info.value.messages[0]
