from django.apps import AppConfig


def embeddings_enqueue_on_import(sender, *, project_id: int, **kwargs) -> None:
    """Receiver of annotation's `pairs_imported`: embed what the import added."""
    from scoring.tasks import embeddings_compute_task

    embeddings_compute_task.delay_on_commit(project_id)


def auto_train_on_labels(sender, *, project_ids: set[int], **kwargs) -> None:
    """Receiver of annotation's `labels_changed` (sent after commit): for projects that train
    automatically, check for enough new labels once the debounce window has passed. The
    cache only spares the broker one message per label; the check itself decides."""
    from django.conf import settings
    from django.core.cache import cache

    from scoring.models import ScoringSettings
    from scoring.tasks import training_auto_start_task

    wait = settings.SCORING_AUTO_TRAIN_DEBOUNCE_S
    for project_id in ScoringSettings.objects.filter(
        project_id__in=project_ids, auto_train_every__isnull=False
    ).values_list("project_id", flat=True):
        if not wait or cache.add(f"scoring:auto-train:{project_id}", 1, timeout=wait):
            training_auto_start_task.apply_async((project_id,), countdown=wait)


class ScoringConfig(AppConfig):
    name = "scoring"
    verbose_name = "Scoring"

    def ready(self) -> None:
        from annotation.signals import labels_changed, pairs_imported

        pairs_imported.connect(
            embeddings_enqueue_on_import, dispatch_uid="scoring_embeddings_on_import"
        )
        labels_changed.connect(auto_train_on_labels, dispatch_uid="scoring_auto_train")
