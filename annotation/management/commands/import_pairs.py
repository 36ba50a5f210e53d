from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from annotation import formats
from annotation.archive import ArchiveInvalid, manifest_in_folder
from annotation.models import Project
from annotation.services.importing import import_job_create, import_job_execute
from annotation.services.projects import project_create
from core.exceptions import ApplicationError
from core.progress import CommandProgress, run_command_check


class Command(BaseCommand):
    help = (
        "Import preference pairs (TRL, hh-rlhf or ranked; JSONL, JSONL.gz, CSV or Parquet) as an "
        "import job of the project, here and now, with a progress bar. Media: a .zip holding "
        "one manifest (pairs.jsonl, pairs.csv or pairs.parquet) and the files it names, or a "
        "manifest (or its folder) whose files are named relative to that folder."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "file", type=Path, help="the file, the .zip, or a folder holding one manifest"
        )
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument("--create", action="store_true", help="create the project if new")
        parser.add_argument("--name", help="project name when --create makes it")
        parser.add_argument(
            "--format", default="auto", choices=["auto", *formats.FORMATS], dest="fmt"
        )
        parser.add_argument(
            "--pairs", default="all", choices=["all", "adjacent"], help="ranked shape: which pairs"
        )
        parser.add_argument("--max-pairs", type=int, default=45, help="ranked: pairs per prompt")
        parser.add_argument("--source", help="label source name (default import:<file name>)")

    def handle(self, *args, file: Path, project: str, create: bool, fmt: str, **opts) -> None:
        if file.is_dir():
            try:
                file = manifest_in_folder(file)
            except ArchiveInvalid as exc:
                raise CommandError(str(exc)) from None
        if not file.is_file():
            raise CommandError(f"no such file: {file}")
        proj = Project.objects.filter(slug=project).first()
        if proj is None and not create:
            raise CommandError(f"no project '{project}' (add --create to make it)")
        created = proj is None
        options = {"pairs": opts["pairs"], "max_pairs": opts["max_pairs"]}
        if opts.get("source"):
            options["source"] = opts["source"]
        try:
            # A file refused before the job exists leaves no project behind either.
            with transaction.atomic():
                if created:
                    proj = project_create(slug=project, name=opts.get("name") or project)
                job = import_job_create(project=proj, path=file, fmt=fmt, options=options)
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        with CommandProgress(self.stderr, unit="rows") as progress:
            job = import_job_execute(job=job, on_progress=progress)
        if job.status != job.Status.SUCCEEDED:
            for error in job.errors:
                self.stderr.write(error)
            if created:  # a failed import changes nothing, not even the project it named
                proj.delete()
        run_command_check(job, what="import")
        self.stdout.write(job.summary["message"])
