from __future__ import annotations

import json
import time

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotation.models import Project
from core.exceptions import ApplicationError
from core.progress import CommandProgress, run_command_check
from curation.models import Detector
from curation.services.runs import curation_run_create, curation_run_execute, curation_run_start


class Command(BaseCommand):
    help = (
        "Find the project's probably-mislabelled pairs with the active reward model, as the "
        "curation page's button does (queued for a worker, or --wait to run here)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument(
            "--wait", action="store_true", help="run the detectors here and now, not on a worker"
        )

        parser.add_argument(
            "--options",
            default="{}",
            help='detector options as JSON, e.g. \'{"folds": 5, "members": 5, "epochs": 8}\'',
        )

    def handle(self, *args, project: str, wait: bool, options: str, **opts) -> None:
        proj = Project.objects.filter(slug=project).first()
        if proj is None:
            raise CommandError(f"no project '{project}'")
        try:
            parsed = json.loads(options)
        except json.JSONDecodeError as exc:
            raise CommandError(f"--options is not JSON: {exc}") from exc
        if not isinstance(parsed, dict):
            raise CommandError("--options must be a JSON object")
        try:
            if not wait:
                run = curation_run_start(project=proj, options=parsed)
                self.stdout.write(f"curation run {run.pk} queued; a worker will run it")
                return
            run = curation_run_create(project=proj, options=parsed)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        started = time.perf_counter()
        with CommandProgress(self.stderr, unit="steps") as progress:
            run = curation_run_execute(run=run, on_progress=progress)
        run_command_check(run, what="curation run")
        self.stdout.write(
            f"curation run {run.pk} succeeded: {run.pairs} pairs, model version "
            f"{run.model_version_id}, {time.perf_counter() - started:.1f} s"
        )
        for name in Detector.values:
            if summary := run.summary.get(name):
                self.stdout.write(
                    f"{name}: flagged={summary['flagged']} mean_score={summary['mean_score']}"
                )
        if policy := run.summary.get("policy"):
            self.stdout.write(f"policy: {policy['name']}: applied to {policy['applied']}")
