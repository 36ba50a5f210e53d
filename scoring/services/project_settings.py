"""A project's reward-model settings (automatic training, ensemble size, curation after
training)."""

from __future__ import annotations

from annotation.models import Project
from core.exceptions import ApplicationError
from scoring.models import ScoringSettings


def scoring_settings_update(
    *,
    project: Project,
    auto_train_every: int | None,
    ensemble_members: int,
    find_noisy_after_training: bool | None = None,
) -> ScoringSettings:
    """Set how often the project trains by itself (None: only by hand), how many heads an
    ensemble has and, unless None (kept as it is), whether each new active model finds
    noisy pairs. Validated before anything is written."""
    if auto_train_every is not None and auto_train_every < 1:
        raise ApplicationError("Automatic training needs at least one new label between runs.")
    if not 1 <= ensemble_members <= 32:
        raise ApplicationError("An ensemble has 1 to 32 heads.")
    defaults: dict = {"auto_train_every": auto_train_every, "ensemble_members": ensemble_members}
    if find_noisy_after_training is not None:
        defaults["find_noisy_after_training"] = find_noisy_after_training
    found, _ = ScoringSettings.objects.update_or_create(project=project, defaults=defaults)
    return found
