from django.apps import AppConfig


def curation_on_model_version_activated(sender, *, project_id: int, **kwargs) -> None:
    """Receiver of scoring's `model_version_activated` (sent after the commit): find noisy
    pairs with the new model, in the worker, when the project asks for it
    (`ScoringSettings.find_noisy_after_training`; the demo does)."""
    from curation.services.runs import curation_run_after_training

    curation_run_after_training(project_id=project_id)


class CurationConfig(AppConfig):
    """Noise detection and curation actions, annotator reliability."""

    name = "curation"
    verbose_name = "Curation"

    def ready(self) -> None:
        from scoring.signals import model_version_activated

        model_version_activated.connect(
            curation_on_model_version_activated,
            dispatch_uid="curation_on_model_version_activated",
        )
