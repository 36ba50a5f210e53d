"""Label aggregation: people's judgements decide; AI judgements fill in where people have not."""

from __future__ import annotations

import uuid

import pytest

from annotation.models import Comparison, Judgement
from annotation.services.labels import comparison_labels_refresh
from tests.factories import comparison_make, judgement_make

pytestmark = pytest.mark.django_db


def _ai(comparison: Comparison, name: str, choice: str, confidence: float | None) -> Judgement:
    return Judgement.objects.create(
        comparison=comparison,
        source_kind=Judgement.SourceKind.AI,
        source_name=f"ai:{name}",
        choice=choice,
        confidence=confidence,
        idempotency_key=uuid.uuid4().hex,
    )


def test_ai_judgements_never_overturn_a_human_label(project, annotator):
    comparison = comparison_make(project)
    judgement_make(comparison, annotator, "a")
    _ai(comparison, "judge-1", "b", 0.9)
    _ai(comparison, "judge-2", "b", 0.9)
    comparison_labels_refresh(comparison_ids=[comparison.pk])
    comparison.refresh_from_db()
    assert (comparison.label, comparison.status) == ("a", "labelled")
    assert comparison.label_confidence == 1.0


def test_ai_judgements_label_a_pair_nobody_labelled_weighted_by_confidence(project):
    comparison = comparison_make(project)
    _ai(comparison, "sure", "b", 0.8)
    _ai(comparison, "unsure", "a", 0.2)
    comparison_labels_refresh(comparison_ids=[comparison.pk])
    comparison.refresh_from_db()
    assert (comparison.label, comparison.status) == ("b", "labelled")
    assert comparison.label_confidence == pytest.approx(0.8)


def test_an_ai_judgement_with_no_confidence_leaves_the_pair_to_people(project):
    comparison = comparison_make(project)
    _ai(comparison, "coin", "a", 0.0)
    comparison_labels_refresh(comparison_ids=[comparison.pk])
    comparison.refresh_from_db()
    assert comparison.label is None
    assert comparison.status == "pending"
