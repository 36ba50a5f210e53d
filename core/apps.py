from django.apps import AppConfig


class CoreConfig(AppConfig):
    """What every app shares: ApplicationError, the advisory locks, roles and the project-view
    decorator, and the abstract Run with its one lifecycle (core/runs.py)."""

    name = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        # A worker process starts its heartbeat thread on Celery's worker_ready signal.
        import core.workers  # noqa: F401
