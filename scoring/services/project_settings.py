"""A project's reward-model settings (automatic training, ensemble size)."""

from __future__ import annotations

from annotation.models import Project
from core.exceptions import ApplicationError
from scoring.models import ScoringSettings


def scoring_settings_update(
    *, project: Project, auto_train_every: int | None, ensemble_members: int
) -> ScoringSettings:
    """Set how often the project trains by itself (None: only by hand) and how many heads an
    ensemble has. Validated before anything is written."""
    if auto_train_every is not None and auto_train_every < 1:
        raise ApplicationError("Automatic training needs at least one new label between runs.")
    if not 1 <= ensemble_members <= 32:
        raise ApplicationError("An ensemble has 1 to 32 heads.")
    found, _ = ScoringSettings.objects.update_or_create(
        project=project,
        defaults={"auto_train_every": auto_train_every, "ensemble_members": ensemble_members},
    )
    return found
