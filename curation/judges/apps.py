from django.apps import AppConfig


class JudgesConfig(AppConfig):
    """AI annotators: reward-model, local-LLM and remote-LLM judges and their verdicts."""

    name = "curation.judges"
    label = "judges"
    verbose_name = "AI annotators"
