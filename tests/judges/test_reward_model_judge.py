"""The reward-model judge: pure verdict arithmetic, runs in-process, idempotency, versions."""

from __future__ import annotations

import numpy as np
import pytest

from annotation.models import Comparison, Judgement
from core.exceptions import ApplicationError
from curation.judges.models import AIAnnotator, AIJudgingRun, AIVerdict
from curation.judges.selectors import ai_human_agreement, ai_verdicts_for
from curation.judges.services.annotators import annotator_create
from curation.judges.services.runs import (
    BATCH,
    ai_judgements_run,
    ai_judging_run_create,
    ai_judging_run_execute,
)
from curation.judges.services.writing import judgement_idempotency_key
from curation.judges.verdicts import orders_combine, reward_model_verdicts
from scoring.models import Score
from tests.factories import comparison_make, judgement_make
from tests.judges.conftest import reward_model_train


def test_reward_model_verdicts_choose_by_p_a_and_trust_a_tight_ensemble_more():
    p = np.array([0.9, 0.9, 0.2, 0.5, 0.7])
    spread = np.array([0.01, 0.3, 0.0, 0.1, 0.0])
    choice_a, confidence = reward_model_verdicts(p, spread)
    assert choice_a.tolist() == [True, True, False, True, True]
    assert confidence[0] == pytest.approx(0.8, abs=1e-3)  # tight: nearly |2p - 1|
    assert confidence[1] < confidence[0]  # same mean, wide spread: less sure
    assert confidence[2] == pytest.approx(0.6)  # spread 0: exactly |2p - 1|
    assert confidence[3] == 0.0  # a coin flip
    assert ((confidence >= 0) & (confidence <= 1)).all()


def test_orders_that_disagree_give_low_confidence():
    # Both orders favour A (B/A already mapped back), then pure position bias.
    p, choice_a, confidence, agree = orders_combine(np.array([0.9, 0.8]), np.array([0.8, 0.2]))
    assert agree.tolist() == [True, False]
    assert choice_a[0]
    assert confidence[0] == pytest.approx(0.7)
    assert p[1] == pytest.approx(0.5)
    assert confidence[1] == pytest.approx(0.0)
    _, _, c, agree = orders_combine(np.array([0.9]), np.array([0.4]))
    assert not agree[0]
    assert c[0] == pytest.approx(abs(2 * 0.65 - 1) * 0.25)


@pytest.mark.django_db
def test_run_writes_one_ai_judgement_per_comparison_and_refreshes_labels(trained, project):
    unlabelled = comparison_make(project, a="A careful, kind and detailed answer.", b="No.")
    annotator = annotator_create(project=project, name="rm", kind=AIAnnotator.Kind.REWARD_MODEL)

    run = ai_judgements_run(annotator=annotator)

    total = Comparison.objects.filter(project=project).count()
    assert (run.status, run.progress_total, run.progress_done, run.ok_count, run.failed_count) == (
        "succeeded",
        total,
        total,
        total,
        0,
    )
    assert run.model_version == f"reward-model#{trained.pk}"
    # The comparison added after scoring was scored by the run.
    assert Score.objects.filter(model_version=trained, comparison=unlabelled).exists()
    ai = Judgement.objects.filter(comparison__project=project, source_kind="ai")
    assert ai.count() == total
    j = ai.get(comparison=unlabelled)
    assert (j.user, j.source_name, j.model_version) == (None, "ai:rm", run.model_version)
    assert j.idempotency_key == judgement_idempotency_key(
        annotator_id=annotator.pk, comparison_id=unlabelled.pk, model_version=run.model_version
    )
    assert 0 <= j.confidence <= 1
    assert "P(A better)" in j.rationale
    verdict = AIVerdict.objects.get(annotator=annotator, comparison=unlabelled)
    assert verdict.status == "ok"
    assert verdict.is_current
    assert verdict.judgement == j
    assert verdict.choice == j.choice
    assert verdict.orders_agree is True
    # The unlabelled comparison now carries the AI's label.
    unlabelled.refresh_from_db()
    assert unlabelled.label == j.choice
    assert unlabelled.status == "labelled"
    # The routing API: one row per comparison with p_a, confidence, orders_agree.
    rows = list(ai_verdicts_for(project=project, annotator=annotator))
    assert len(rows) == total
    assert {"p_a", "confidence", "orders_agree", "choice"} <= set(rows[0])


@pytest.mark.django_db
def test_running_again_on_the_same_version_makes_nothing_new(trained, project):
    annotator = annotator_create(project=project, name="rm", kind=AIAnnotator.Kind.REWARD_MODEL)
    first = ai_judgements_run(annotator=annotator)
    judgements = list(Judgement.objects.filter(source_kind="ai").values_list("id", "choice"))

    again = ai_judgements_run(annotator=annotator)

    assert again.status == "succeeded"
    assert (again.skipped_count, again.ok_count, again.failed_count) == (first.progress_total, 0, 0)
    assert (
        list(Judgement.objects.filter(source_kind="ai").values_list("id", "choice")) == judgements
    )
    assert AIVerdict.objects.count() == first.progress_total


@pytest.mark.django_db
def test_new_model_version_updates_the_judgement_and_keeps_verdict_history(trained, project):
    annotator = annotator_create(project=project, name="rm", kind=AIAnnotator.Kind.REWARD_MODEL)
    first = ai_judgements_run(annotator=annotator)
    second_version = reward_model_train(project)

    second = ai_judgements_run(annotator=annotator)

    assert second.model_version == f"reward-model#{second_version.pk}" != first.model_version
    n = first.progress_total
    assert Judgement.objects.filter(source_kind="ai").count() == n
    assert set(
        Judgement.objects.filter(source_kind="ai").values_list("model_version", flat=True)
    ) == {second.model_version}
    assert AIVerdict.objects.count() == 2 * n
    assert (
        AIVerdict.objects.filter(is_current=True, model_version=second.model_version).count() == n
    )
    assert len(ai_verdicts_for(project=project)) == n


@pytest.mark.django_db
def test_no_active_reward_model_is_refused_and_makes_no_run(project):
    annotator = annotator_create(project=project, name="rm", kind=AIAnnotator.Kind.REWARD_MODEL)
    with pytest.raises(ApplicationError, match="no active reward model"):
        ai_judgements_run(annotator=annotator)
    assert not AIJudgingRun.objects.exists()


@pytest.mark.django_db
def test_comparison_ids_of_another_project_are_refused(project, other_project):
    stranger = comparison_make(other_project)
    annotator = annotator_create(project=project, name="rm", kind=AIAnnotator.Kind.REWARD_MODEL)
    with pytest.raises(ApplicationError, match="not in this project"):
        ai_judgements_run(annotator=annotator, comparison_ids=[stranger.pk])
    assert not AIVerdict.objects.exists()


@pytest.mark.django_db
def test_given_ids_only_and_agreement_with_humans(trained, project, admin, annotator):
    rm = annotator_create(project=project, name="rm", kind=AIAnnotator.Kind.REWARD_MODEL)
    ids = list(
        Comparison.objects.filter(project=project).order_by("id").values_list("id", flat=True)
    )
    run = ai_judgements_run(annotator=rm, comparison_ids=ids[:3])
    assert (run.scope, run.progress_total, run.ok_count) == ("ids", 3, 3)
    verdicts = dict(AIVerdict.objects.values_list("comparison_id", "choice"))
    assert set(verdicts) == set(ids[:3])
    flip = {"a": "b", "b": "a"}
    judgement_make(Comparison.objects.get(pk=ids[0]), admin, verdicts[ids[0]])
    judgement_make(Comparison.objects.get(pk=ids[1]), admin, flip[verdicts[ids[1]]])
    # A human tie (one each way) has no majority and is left out.
    judgement_make(Comparison.objects.get(pk=ids[2]), admin, "a")
    judgement_make(Comparison.objects.get(pk=ids[2]), annotator, "b")
    assert ai_human_agreement(annotator=rm) == {"n": 2, "agree": 1, "rate": 0.5}


@pytest.mark.django_db
def test_a_run_past_its_time_budget_is_queued_again_and_goes_on_where_it_stopped(
    trained, project, sent, django_capture_on_commit_callbacks
):
    annotator = annotator_create(project=project, name="rm", kind=AIAnnotator.Kind.REWARD_MODEL)
    run = ai_judging_run_create(annotator=annotator)

    with django_capture_on_commit_callbacks(execute=True):
        run = ai_judging_run_execute(run=run, time_budget_s=0)  # one batch, then it defers

    # Back in the queue with a fresh delivery count, its continuation task sent.
    assert (run.status, run.attempts, run.progress_done, run.ok_count, run.progress_total) == (
        "queued",
        0,
        BATCH,
        BATCH,
        40,
    )
    assert run.finished_at is None
    assert sent == [(AIJudgingRun.TASK, (run.pk,), run.queue)]
    assert AIVerdict.objects.filter(run=run).count() == BATCH
    run = ai_judging_run_execute(run=run)  # what the continuation task does
    assert (run.status, run.progress_done, run.ok_count, run.skipped_count) == (
        "succeeded",
        40,
        40,
        0,
    )
    assert AIVerdict.objects.filter(run=run).count() == 40
    assert Judgement.objects.filter(source_kind="ai").count() == 40
