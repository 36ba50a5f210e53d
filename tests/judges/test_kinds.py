"""The registry of judge kinds: every kind an annotator can have is in it, and a kind that
is not is refused with a message instead of failing somewhere inside a run."""

from __future__ import annotations

import pytest

from core.exceptions import ApplicationError
from curation.judges.models import AIAnnotator, AIJudgingRun
from curation.judges.services.annotators import annotator_create
from curation.judges.services.kinds import JUDGE_KINDS, LOCAL_DEFAULTS, REMOTE_DEFAULTS
from curation.judges.services.runs import ai_judging_run_create


def test_every_annotator_kind_has_a_judge_in_the_registry():
    assert set(JUDGE_KINDS) == set(AIAnnotator.Kind.values)
    for kind, spec in JUDGE_KINDS.items():
        assert callable(spec.version), kind
        assert callable(spec.factory), kind
    # Each kind's settings: what the form offers and _settings_clean keeps.
    assert JUDGE_KINDS[AIAnnotator.Kind.REWARD_MODEL].defaults == {}
    assert JUDGE_KINDS[AIAnnotator.Kind.LOCAL_LLM].defaults == LOCAL_DEFAULTS
    assert JUDGE_KINDS[AIAnnotator.Kind.REMOTE_LLM].defaults == REMOTE_DEFAULTS
    assert [k for k, spec in JUDGE_KINDS.items() if spec.remote] == [AIAnnotator.Kind.REMOTE_LLM]


@pytest.mark.django_db
def test_an_unknown_kind_is_refused_and_makes_no_annotator(project):
    with pytest.raises(ApplicationError, match="Unknown AI annotator kind 'crystal_ball'"):
        annotator_create(project=project, name="oracle", kind="crystal_ball")
    assert not AIAnnotator.objects.exists()


@pytest.mark.django_db
def test_a_stored_annotator_of_an_unknown_kind_cannot_start_a_run(project):
    # A row written around the service (an old kind, the admin): refused with the same
    # message when it is asked to judge, and no run is left behind.
    oracle = AIAnnotator.objects.create(project=project, name="oracle", kind="crystal_ball")
    with pytest.raises(ApplicationError, match="Unknown AI annotator kind 'crystal_ball'"):
        ai_judging_run_create(annotator=oracle)
    assert not AIJudgingRun.objects.exists()
