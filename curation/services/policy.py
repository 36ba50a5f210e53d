"""The project's automatic curation policy: an action applied to the flags of one detector
at or above a score, at the end of every run."""

from __future__ import annotations

import math
import uuid

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from annotation.models import Project
from core.exceptions import ApplicationError
from curation.models import CurationAction, CurationPolicy, CurationRun, Detector, NoiseFlag
from curation.services.actions import (
    _act,
    _labels_changed,
    _locked,
    _refuse_reason,
    _requeue_priority,
)


def curation_policy_set(
    *,
    project: Project,
    actor: AbstractBaseUser,
    enabled: bool,
    detector: str,
    threshold: float,
    action: str,
) -> CurationPolicy:
    """Set the project's automatic policy (applied at the end of each run)."""
    if detector not in Detector.values:
        raise ApplicationError(f"Unknown detector '{detector}'.")
    if action not in CurationPolicy.AUTO_ACTIONS:
        raise ApplicationError("A policy can drop, flip or send back to humans.")
    if not (isinstance(threshold, int | float) and 0.0 <= threshold <= 1.0) or math.isnan(
        threshold
    ):
        raise ApplicationError("The threshold is a score between 0 and 1.")
    policy, _ = CurationPolicy.objects.update_or_create(
        project=project,
        defaults={
            "enabled": enabled,
            "detector": detector,
            "threshold": float(threshold),
            "action": action,
            "updated_by": actor,
        },
    )
    return policy


def curation_policy_apply(*, policy: CurationPolicy, run: CurationRun) -> list[CurationAction]:
    """Apply the policy's action to the run's open flags of its detector at or above its
    threshold. A pair the action cannot apply to is left for a person. Idempotent: a
    reviewed flag is not acted on again."""
    flags = NoiseFlag.objects.filter(
        run=run,
        detector=policy.detector,
        score__gte=policy.threshold,
        state=NoiseFlag.State.OPEN,
    ).values_list("comparison_id", flat=True)
    batch = uuid.uuid4()
    done = []
    with transaction.atomic():
        priority = _requeue_priority(run.project)
        for comparison in _locked(run.project, set(flags)):
            if _refuse_reason(comparison, policy.action) is None:
                done.append(
                    _act(
                        comparison,
                        policy.action,
                        actor=None,
                        policy=policy,
                        batch=batch,
                        requeue_priority=priority,
                    )
                )
        if done:
            _labels_changed(run.project_id)
    return done
