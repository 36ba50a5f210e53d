from __future__ import annotations

import itertools
import secrets
import tempfile
from pathlib import Path

import orjson
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from annotation.models import Membership, Project
from annotation.services.exporting import export_rows
from annotation.services.importing import pairs_import
from annotation.services.projects import project_create
from core.exceptions import ApplicationError
from curation.services.demo import (
    DEMO_ANNOTATOR_NAME,
    DEMO_AUTO_TRAIN_EVERY,
    DEMO_HUMAN_BUDGET,
    DEMO_ROUTING_POLICY,
    demo_pipeline_start,
)

SHARED_SAMPLE = settings.BASE_DIR.parent / "shared" / "data" / "hh-rlhf-harmless-sample.jsonl.gz"
FALLBACK_SAMPLE = settings.BASE_DIR / "annotation" / "fixtures" / "demo_pairs.jsonl"
LABEL_POOL = 300
INSTRUCTIONS = """\
**Demo project.** Compare the two answers to the conversation and pick the one that is
*less harmful* while still helpful.

The data is a sample of Anthropic's hh-rlhf (harmless-base, test split, MIT licence): it is
red-teaming data, so the requests are offensive **on purpose**.
"""


class Command(BaseCommand):
    help = (
        "Create the demo admin and the demo projects (idempotent); prints the login. The "
        "first time, it also sets the demo project up to work by itself: automatic training "
        f"every {DEMO_AUTO_TRAIN_EVERY} new labels, noisy pairs found with each new model, "
        f"an AI annotator '{DEMO_ANNOTATOR_NAME}' (the project's reward model) and "
        f"{DEMO_ROUTING_POLICY} routing within a {DEMO_HUMAN_BUDGET} human budget; and it "
        "queues the first training run for the worker, whose new model then finds noisy "
        "pairs and routes the project. Never twice: a project that has trained is left as it is."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--sample",
            type=Path,
            help="Pairs to import instead of the hh-rlhf sample in ../shared/data (or, "
            "without it, the bundled annotation/fixtures/demo_pairs.jsonl).",
        )

    def handle(self, *args, **opts) -> None:
        password = self._admin_password()
        admin = get_user_model().objects.get(username="admin")
        sample = opts["sample"] or (SHARED_SAMPLE if SHARED_SAMPLE.is_file() else FALLBACK_SAMPLE)
        with transaction.atomic():
            project = Project.objects.filter(slug="demo").first() or project_create(
                slug="demo", name="Demo: hh-rlhf harmlessness", instructions=INSTRUCTIONS
            )
            Membership.objects.get_or_create(
                project=project, user=admin, defaults={"role": Membership.Role.ADMIN}
            )
            result = pairs_import(project=project, path=sample, source_name=f"import:{sample.name}")
        self.stdout.write(f"demo project 'demo' from {sample.name}: {result.message}")
        self.stdout.write(f"demo project 'demo-label': {self._label_pool(project, admin)}")
        self.stdout.write(f"demo project 'demo' in the background: {self._pipeline(project)}")
        self.stdout.write(self.style.SUCCESS(f"log in as admin / {password}"))

    def _pipeline(self, project: Project) -> str:
        try:
            run = demo_pipeline_start(project=project)
        except ApplicationError as exc:
            return f"not started: {exc.message}"
        if run is None:
            return "already trained (or training): nothing queued"
        return (
            f"training run {run.pk} queued; once it succeeds, its model finds noisy pairs "
            "and routes the project (the worker does it in a few minutes)"
        )

    def _label_pool(self, source: Project, admin) -> str:
        """A project to label straight away: the first pairs of the demo, labels left out."""
        with transaction.atomic():
            project = Project.objects.filter(slug="demo-label").first() or project_create(
                slug="demo-label", name="Demo: label these pairs", instructions=INSTRUCTIONS
            )
            Membership.objects.get_or_create(
                project=project, user=admin, defaults={"role": Membership.Role.ADMIN}
            )
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "demo-label-pool.jsonl"
                with open(path, "wb") as fh:
                    for row in itertools.islice(export_rows(project=source), LABEL_POOL):
                        pool_row = {
                            "prompt": row["prompt"],
                            "responses": [row["chosen"], row["rejected"]],
                        }
                        fh.write(orjson.dumps(pool_row) + b"\n")
                result = pairs_import(project=project, path=path, source_name=f"import:{path.name}")
        return result.message

    def _admin_password(self) -> str:
        """A random password, made once and kept in .local/ so each run can print it."""
        User = get_user_model()
        secret = settings.LOCAL_DIR / "demo-admin-password"
        secret.parent.mkdir(exist_ok=True)
        user = User.objects.filter(username="admin").first()
        if user and secret.is_file():
            return secret.read_text().strip()
        password = secrets.token_urlsafe(12)
        if user is None:
            User.objects.create_superuser("admin", "admin@example.com", password)
        else:
            user.set_password(password)
            user.save(update_fields=["password"])
        secret.write_text(password + "\n")
        secret.chmod(0o600)
        return password
