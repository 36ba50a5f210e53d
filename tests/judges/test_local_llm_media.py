"""The local LLM judge (SmolLM2) reads text only: on a project of image or audio pairs it
refuses with a message that says why and what to use instead, before loading anything."""

from __future__ import annotations

import pytest

from core.exceptions import ApplicationError
from curation.judges.models import AIAnnotator, AIJudgingRun, AIVerdict
from curation.judges.services.annotators import annotator_create
from curation.judges.services.kinds import judge_for
from curation.judges.services.runs import ai_judging_run_create
from tests.factories import comparison_make, media_comparison_make

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("kind", ["image", "audio"])
def test_local_llm_judge_refuses_a_media_project(project, kind):
    comparison = media_comparison_make(project, kind=kind)
    smol = annotator_create(project=project, name="smol", kind=AIAnnotator.Kind.LOCAL_LLM)

    with pytest.raises(ApplicationError) as refused:
        ai_judging_run_create(annotator=smol)

    message = refused.value.message
    assert "reads text only" in message
    assert f"compares {kind} files" in message
    assert "reward-model judge" in message
    assert not AIJudgingRun.objects.exists()
    # A run queued before the media came is refused by the judge itself, too.
    with pytest.raises(ApplicationError, match="reads text only"):
        judge_for(smol, "SmolLM2@x", [comparison.id])
    assert not AIVerdict.objects.exists()


def test_local_llm_judge_still_accepts_a_text_project(project):
    comparison_make(project)
    smol = annotator_create(project=project, name="smol", kind=AIAnnotator.Kind.LOCAL_LLM)

    run = ai_judging_run_create(annotator=smol)

    assert run.status == "queued"
    assert run.model_version.startswith("SmolLM2")
