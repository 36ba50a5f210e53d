from django.apps import AppConfig


class RoutingConfig(AppConfig):
    """AI annotators and routing of comparisons to humans or AI within a budget."""

    name = "curation.routing"
    label = "routing"
    verbose_name = "Routing"
