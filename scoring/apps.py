from django.apps import AppConfig
from django.db import transaction


def embeddings_enqueue_on_import(sender, *, project_id: int, **kwargs) -> None:
    """Receiver of annotation's `pairs_imported`: embed what the import added."""
    from scoring.tasks import embeddings_compute_task

    transaction.on_commit(lambda: embeddings_compute_task.delay(project_id))


class ScoringConfig(AppConfig):
    name = "scoring"
    verbose_name = "Scoring"

    def ready(self) -> None:
        from annotation.signals import pairs_imported

        pairs_imported.connect(
            embeddings_enqueue_on_import, dispatch_uid="scoring_embeddings_on_import"
        )
