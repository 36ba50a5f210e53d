from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotation.models import Project
from core.exceptions import ApplicationError
from core.progress import CommandProgress, run_command_check
from scoring.models import TrainingRun
from scoring.services.scores import scores_compute
from scoring.services.training import training_run_create, training_run_execute, training_run_start


class Command(BaseCommand):
    help = "Train a reward model on a project's labelled pairs (queued for a worker, or --wait)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument("--kind", choices=TrainingRun.Kind.values, default="heads")
        parser.add_argument(
            "--config", default="{}", help="training options as JSON, e.g. '{\"epochs\": 8}'"
        )
        parser.add_argument(
            "--wait",
            action="store_true",
            help="train here and now (with a progress bar) instead of on a worker",
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
            if not wait:
                run = training_run_start(project=proj, kind=kind, config=options)
                self.stdout.write(f"training run {run.pk} queued; a worker will train it")
                return
            run = training_run_create(project=proj, kind=kind, config=options)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        with CommandProgress(self.stderr, unit="steps") as progress:
            run = training_run_execute(run=run, on_progress=progress)
        run_command_check(run, what="training run")
        version = run.model_version
        scored = scores_compute(version=version)
        self.stdout.write(f"training run {run.pk} succeeded: model version {version.pk} is active")
        for key, value in sorted(version.metrics.items()):
            self.stdout.write(f"{key}={value}")
        self.stdout.write(f"scored_comparisons={scored}")
