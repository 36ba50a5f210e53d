from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotation.exceptions import ApplicationError
from annotation.models import Project
from scoring.models import ModelVersion
from scoring.services import model_version_train, model_version_train_start, scores_compute


class Command(BaseCommand):
    help = "Train a reward model on a project's labelled pairs (queued for a worker, or --wait)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument("--kind", choices=ModelVersion.Kind.values, default="heads")
        parser.add_argument(
            "--config", default="{}", help="training options as JSON, e.g. '{\"epochs\": 8}'"
        )
        parser.add_argument(
            "--wait", action="store_true", help="train here and now instead of on a worker"
        )

    def handle(self, *args, project: str, kind: str, config: str, wait: bool, **opts) -> None:
        proj = Project.objects.filter(slug=project).first()
        if proj is None:
            raise CommandError(f"no project '{project}'")
        try:
            options = json.loads(config)
        except json.JSONDecodeError as exc:
            raise CommandError(f"--config is not JSON: {exc}") from exc
        if not isinstance(options, dict):
            raise CommandError("--config must be a JSON object")
        try:
            version = model_version_train_start(
                project=proj, kind=kind, config=options, enqueue=not wait
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        if not wait:
            self.stdout.write(f"model version {version.pk} queued; a worker will train it")
            return
        version = model_version_train(version=version)
        if version.status != ModelVersion.Status.SUCCEEDED:
            raise CommandError(f"model version {version.pk} {version.status}: {version.error}")
        scored = scores_compute(version=version)
        self.stdout.write(f"model version {version.pk} succeeded and is active")
        for key, value in sorted(version.metrics.items()):
            self.stdout.write(f"{key}={value}")
        self.stdout.write(f"scored_comparisons={scored}")
