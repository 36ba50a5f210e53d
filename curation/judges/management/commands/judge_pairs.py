"""python manage.py judge_pairs --project SLUG --annotator NAME [--scope all|routed] [--wait]"""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Judgement, Project
from core.exceptions import ApplicationError
from core.progress import CommandProgress, run_command_check
from curation.judges.models import AIJudgingRun
from curation.judges.selectors import ai_human_agreement, annotator_get_by_name
from curation.judges.services.runs import (
    ai_judging_run_create,
    ai_judging_run_execute,
    ai_judging_run_start,
)


class Command(BaseCommand):
    help = "Run an AI annotator over a project's comparisons (queued for the worker, or --wait)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument("--annotator", required=True, help="AI annotator name")
        parser.add_argument(
            "--scope",
            choices=[AIJudgingRun.Scope.ALL, AIJudgingRun.Scope.ROUTED],
            default=AIJudgingRun.Scope.ALL,
            help="all comparisons, or only those routed to AI (route ai or both)",
        )
        parser.add_argument(
            "--wait", action="store_true", help="judge in this process and print the counts"
        )

    def handle(self, *args, **options) -> None:
        project = Project.objects.filter(slug=options["project"]).first()
        if project is None:
            raise CommandError(f"No project '{options['project']}'.")
        annotator = annotator_get_by_name(project=project, name=options["annotator"])
        if annotator is None:
            raise CommandError(
                f"Project '{project.slug}' has no AI annotator '{options['annotator']}'."
            )
        try:
            if not options["wait"]:
                run = ai_judging_run_start(annotator=annotator, scope=options["scope"])
                self.stdout.write(f"run={run.id} status=queued model_version={run.model_version}")
                return
            run = ai_judging_run_create(annotator=annotator, scope=options["scope"])
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        started = time.monotonic()
        with CommandProgress(self.stderr, unit="comparisons") as progress:
            run = ai_judging_run_execute(run=run, on_progress=progress)
        seconds = time.monotonic() - started
        run_command_check(run, what="AI judging run")
        # Agreement of the annotator's current verdicts with human labels, and with human
        # and imported labels together (the majority of those judgements; ties left out).
        human = ai_human_agreement(annotator=annotator)
        labels = ai_human_agreement(
            annotator=annotator,
            source_kinds=(Judgement.SourceKind.HUMAN, Judgement.SourceKind.IMPORT),
        )
        self.stdout.write(
            f"run={run.id} status={run.status} total={run.progress_total} ok={run.ok_count} "
            f"failed={run.failed_count} skipped={run.skipped_count} "
            f"model_version={run.model_version} seconds={seconds:.1f} "
            f"agree_human={_rate(human)} n_human={human['n']} "
            f"agree_labels={_rate(labels)} n_labels={labels['n']}"
        )


def _rate(agreement: dict) -> str:
    return "nan" if agreement["rate"] is None else f"{agreement['rate']:.3f}"
