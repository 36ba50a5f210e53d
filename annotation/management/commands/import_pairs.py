from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from annotation import formats
from annotation.models import Project
from annotation.services.importing import ImportRejected, pairs_import
from annotation.services.projects import project_create


class Command(BaseCommand):
    help = "Import preference pairs (TRL, hh-rlhf or ranked; JSONL, JSONL.gz, CSV or Parquet)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
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
        if not file.is_file():
            raise CommandError(f"no such file: {file}")
        with transaction.atomic():
            proj = Project.objects.filter(slug=project).first()
            if proj is None and not create:
                raise CommandError(f"no project '{project}' (add --create to make it)")
            if proj is None:
                proj = project_create(slug=project, name=opts.get("name") or project)
            try:
                result = pairs_import(
                    project=proj,
                    path=file,
                    source_name=opts.get("source") or f"import:{file.name}",
                    fmt=fmt,
                    options=formats.Options(
                        pairs=opts["pairs"],
                        max_pairs=opts["max_pairs"],
                        max_line_bytes=_max_line(),
                    ),
                )
            except ImportRejected as exc:
                for error in exc.errors:
                    self.stderr.write(error)
                raise CommandError(exc.message) from None
        self.stdout.write(result.message)


def _max_line() -> int:
    from django.conf import settings

    return settings.IMPORT_MAX_LINE_BYTES
