"""The demo project's background work (`manage.py demo_setup`, which `make run` calls): its
settings made once, then the first model trained in the worker, after which the product's
own triggers take over.

The chain is the product's, with nothing keyed on the demo: the training run's new active
model is scored, re-routes the project (routing listens to `model_version_activated`) and,
because the demo turns `find_noisy_after_training` on, finds noisy pairs with it
(curation listens too). Later models, trained automatically after new labels, do the same.
"""

from __future__ import annotations

from django.db import transaction

from annotation.models import Project
from curation.judges.models import AIAnnotator
from curation.judges.services.annotators import annotator_create
from curation.routing.models import RoutingSettings
from curation.routing.services.project_settings import routing_settings_update
from scoring.models import TrainingRun
from scoring.selectors import scoring_settings_get
from scoring.services.project_settings import scoring_settings_update
from scoring.services.training import training_run_start

# A new model after every 100 new labels: a few minutes of labelling or AI judging in the
# demo, and a heads run on the CPU takes seconds.
DEMO_AUTO_TRAIN_EVERY = 100
# Predicted human gain (HyPER), the method the product is built around, with half the
# comparisons for people: pairs imported into the demo later are split between the queue
# and the reward-model judge below.
DEMO_ROUTING_POLICY = "gain"
DEMO_HUMAN_BUDGET = "50%"
# The AI annotator that needs nothing but the project's own model: no LLM, no API key.
DEMO_ANNOTATOR_NAME = "Reward model"


def demo_pipeline_start(*, project: Project) -> TrainingRun | None:
    """Turn on the demo's settings (automatic training, noisy pairs found after each new
    model, a reward-model AI annotator, gain routing within a 50 % human budget) and queue
    the first training run, which starts the rest once it succeeds. Returns the run, or
    None when the project has trained before (a run finished, failed or is going): the
    pipeline is queued once, and settings an admin has changed since are left alone."""
    with transaction.atomic():
        # The project's row lock: two demo_setups at once queue one run.
        Project.objects.select_for_update().get(pk=project.pk)
        if TrainingRun.objects.filter(project=project).exists():
            return None
        current = scoring_settings_get(project=project)
        scoring_settings_update(
            project=project,
            auto_train_every=DEMO_AUTO_TRAIN_EVERY,
            ensemble_members=current.ensemble_members,
            find_noisy_after_training=True,
        )
        if not AIAnnotator.objects.filter(project=project, name=DEMO_ANNOTATOR_NAME).exists():
            annotator_create(
                project=project, name=DEMO_ANNOTATOR_NAME, kind=AIAnnotator.Kind.REWARD_MODEL
            )
        if not RoutingSettings.objects.filter(project=project).exists():
            routing_settings_update(
                project=project, policy=DEMO_ROUTING_POLICY, budget=DEMO_HUMAN_BUDGET
            )
        # Enqueued when this commits (make run's worker picks it up once it starts): the
        # product's default heads, seconds of training after the embedding.
        return training_run_start(project=project, trigger=TrainingRun.Trigger.AUTO)
