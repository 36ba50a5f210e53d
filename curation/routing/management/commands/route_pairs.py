"""Route a project's unlabelled comparisons to humans or AI within its budget."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Project
from core.exceptions import ApplicationError
from core.progress import CommandProgress, run_command_check
from curation.routing.policies import POLICIES
from curation.routing.services.project_settings import routing_settings_update
from curation.routing.services.runs import pairs_route


class Command(BaseCommand):
    help = (
        "Route the unlabelled comparisons of a project (already-labelled ones keep their "
        "labels), here and now, then judge the AI-routed ones with the project's AI "
        "annotator. --policy and --budget are saved to the project first."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--project", required=True, help="The project's slug.")
        parser.add_argument("--policy", choices=POLICIES, help="Set the routing policy.")
        parser.add_argument(
            "--budget",
            help="Set the human budget: a count (120), a fraction (0.3) or a percentage "
            "(30%%); an empty string removes it.",
        )
        parser.add_argument(
            "--no-ai-labels",
            action="store_true",
            help="Route only; do not run the AI annotator on the AI-routed comparisons.",
        )

    def handle(self, *args, project: str, policy: str | None, budget: str | None, **opts) -> None:
        found = Project.objects.filter(slug=project).first()
        if found is None:
            raise CommandError(f"No project with slug '{project}'.")
        try:
            if policy is not None or budget is not None:
                routing_settings_update(project=found, policy=policy, budget=budget)
            with CommandProgress(self.stderr, unit="comparisons") as progress:
                run = pairs_route(
                    project=found, apply_ai_labels=not opts["no_ai_labels"], on_progress=progress
                )
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        run_command_check(run, what="routing run")
        counts = dict(run.counts)
        judging = run.ai_judging_run
        if judging is not None:
            judging.refresh_from_db()
            run_command_check(judging, what="AI judging run")
        counts["ai_labelled"] = judging.ok_count + judging.skipped_count if judging else 0
        budget_text = "no limit" if run.budget_limit is None else f"{run.budget_limit:,}"
        self.stdout.write(
            f"policy {run.policy_used or run.policy} (asked: {run.policy}), budget {budget_text}"
        )
        if run.message:
            self.stdout.write(run.message)
        for key in ("human", "ai", "kept", "labelled", "ai_labelled"):
            self.stdout.write(f"{key}: {counts.get(key, 0):,}")
        self.stdout.write(
            " ".join(
                f"{key}={counts.get(key, 0)}" for key in ("human", "ai", "kept", "ai_labelled")
            )
        )
