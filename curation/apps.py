from django.apps import AppConfig


class CurationConfig(AppConfig):
    """Noise detection and curation actions, annotator reliability."""

    name = "curation"
    verbose_name = "Curation"
