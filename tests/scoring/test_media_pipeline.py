"""A media project through scoring, curation and routing with the real encoders: train heads
on a small image project and a small audio project, score them, find noisy pairs, judge with
the reward model and route the open pairs."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from annotation.models import Choice, Comparison
from core.exceptions import ApplicationError
from curation.judges.models import AIAnnotator, AIVerdict
from curation.judges.services.annotators import annotator_create
from curation.judges.services.runs import ai_judging_run_create, ai_judging_run_execute
from curation.models import CurationRun, NoiseFlag
from curation.routing.models import RoutingDecision
from curation.routing.services.project_settings import routing_settings_update
from curation.routing.services.runs import pairs_route
from curation.services.runs import curation_run_create, curation_run_execute
from scoring.encoders import encoder_for
from scoring.heads import FEATURES_MIXED
from scoring.models import Embedding, Score
from scoring.selectors import project_modality, training_comparisons
from scoring.services.training import training_run_create, training_run_execute
from tests.scoring.media_pairs import media_pair_make

pytestmark = pytest.mark.django_db

LABELLED = 24
OPEN = 6
TRAIN = {"epochs": 30, "batch_size": 8, "lr": 1e-2, "members": 3, "hidden": 32}
DETECT = {"folds": 3, "members": 2, "epochs": 2, "rounds": 1, "peer_steps": 1}
DIMS = {"image": 1280, "audio": 512}


@pytest.fixture(scope="module")
def media_encoders():
    """Both media encoders and the text one, loaded once for the module's tests."""
    return {kind: encoder_for(kind) for kind in ("text", "image", "audio")}


@pytest.mark.parametrize("kind", ["image", "audio"])
def test_media_project_trains_scores_curates_judges_and_routes(
    kind, project, annotator, media_encoders
):
    labelled = [media_pair_make(project, kind, i, labeller=annotator) for i in range(LABELLED)]
    open_pairs = [media_pair_make(project, kind, 100 + i) for i in range(OPEN)]
    assert project_modality(project=project) == kind
    assert training_comparisons(project=project).count() == LABELLED

    run = training_run_execute(run=training_run_create(project=project, config=TRAIN))

    assert run.status == "succeeded", run.error
    version = run.model_version
    assert version.is_active
    assert version.metrics["train_pairs"] > 0
    # Prompts by the text encoder, candidates by the encoder of their kind.
    media = Embedding.objects.filter(encoder=media_encoders[kind].version)
    assert media.count() == 2 * (LABELLED + OPEN)
    assert set(media.values_list("dim", flat=True)) == {DIMS[kind]}
    assert Embedding.objects.filter(encoder=media_encoders["text"].version).count() == (
        LABELLED + OPEN
    )
    with version.artifact.open("rb") as fh:
        blob = torch.load(io.BytesIO(fh.read()), weights_only=True)
    assert blob["features"] == FEATURES_MIXED
    assert blob["hparams"]["in_dim"] == DIMS[kind] + 384

    # Scoring (also set off after training) covers every pair, and learnt the clean side.
    from scoring.services.scores import scores_compute

    assert scores_compute(version=version) == LABELLED + OPEN
    scores = dict(Score.objects.filter(model_version=version).values_list("comparison_id", "p_a"))
    assert set(scores) == {c.id for c in labelled + open_pairs}
    for c in labelled:
        c.refresh_from_db()
    right = np.mean([(scores[c.id] > 0.5) == (c.label == Choice.A) for c in labelled])
    assert right >= 0.9
    clean_is_a = [c.id for c in open_pairs if int(c.prompt.text.split("(")[1][:-1]) % 2]
    right_open = np.mean([(scores[c.id] > 0.5) == (c.id in clean_is_a) for c in open_pairs])
    assert right_open >= 0.8  # pairs it never saw

    # Curation: every detector over the labelled pairs.
    curation = curation_run_execute(run=curation_run_create(project=project, options=DETECT))
    assert curation.status == CurationRun.Status.SUCCEEDED, curation.error
    assert curation.pairs == LABELLED
    assert set(curation.summary) >= {"ensemble_strength", "cleanlab", "combined"}
    assert all(
        f.comparison_id in {c.id for c in labelled} for f in NoiseFlag.objects.filter(run=curation)
    )

    # Routing the open pairs with the model's scores and the media embeddings.
    routing_settings_update(project=project, policy="uncertainty", budget="3")
    routed = pairs_route(project=project, apply_ai_labels=False)
    assert routed.status == "succeeded", routed.error
    assert routed.counts["human"] + routed.counts["ai"] == OPEN
    assert RoutingDecision.objects.filter(run=routed).count() == OPEN
    human = Comparison.objects.filter(project=project, route="human", label__isnull=True)
    assert sorted(human.values_list("priority", flat=True)) == list(
        range(1, routed.counts["human"] + 1)
    )

    # The reward-model judge gives a verdict on every media pair (its verdicts label the
    # open ones: so after routing).
    judge = annotator_create(project=project, name="rm", kind=AIAnnotator.Kind.REWARD_MODEL)
    judged = ai_judging_run_execute(run=ai_judging_run_create(annotator=judge))
    assert judged.status == "succeeded", judged.error
    verdicts = AIVerdict.objects.filter(annotator=judge)
    assert verdicts.count() == LABELLED + OPEN
    assert set(verdicts.values_list("status", flat=True)) == {AIVerdict.Status.OK}


def test_a_media_project_refuses_a_transformer_run(project, annotator):
    for i in range(3):
        media_pair_make(project, "image", i, labeller=annotator)

    with pytest.raises(ApplicationError, match="reads text, and this project's candidates are"):
        training_run_create(project=project, kind="transformer")
