from django.apps import AppConfig


def routing_on_model_version_activated(sender, *, project_id: int, **kwargs) -> None:
    """Receiver of scoring's `model_version_activated` (sent after the commit): re-route
    the project with the new model's scores, in the worker."""
    from annotation.models import Project
    from curation.routing.models import RoutingRun
    from curation.routing.services.runs import routing_run_start

    project = Project.objects.filter(pk=project_id).first()
    if project is not None:
        routing_run_start(project=project, trigger=RoutingRun.Trigger.MODEL_VERSION)


class RoutingConfig(AppConfig):
    """Routing of comparisons to humans or AI within a budget, and the human queue's order."""

    name = "curation.routing"
    label = "routing"
    verbose_name = "Routing"

    def ready(self) -> None:
        from scoring.signals import model_version_activated

        model_version_activated.connect(
            routing_on_model_version_activated, dispatch_uid="routing_on_model_version_activated"
        )
