from __future__ import annotations

import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotation.models import Project
from annotation.services.exporting import EXPORT_FORMATS, export_write
from core.exceptions import ApplicationError


class Command(BaseCommand):
    help = (
        "Export the labelled pairs of a project in TRL's columns (JSONL or Parquet), or, for "
        "a project with images or audio, as an archive (pairs.jsonl + the files) or Parquet "
        "with datasets' Image/Audio columns."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("out", type=Path)
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument(
            "--format",
            choices=EXPORT_FORMATS,
            default="trl-jsonl",
            dest="fmt",
            help="trl-jsonl (text only), trl-parquet, or archive (a .zip in the import's shape)",
        )
        parser.add_argument(
            "--with-confidence",
            action="store_true",
            help="add a `confidence` column: the label's confidence in 0..1 (not in archives)",
        )

    def handle(
        self, *args, out: Path, project: str, fmt: str, with_confidence: bool, **opts
    ) -> None:
        proj = Project.objects.filter(slug=project).first()
        if proj is None:
            raise CommandError(f"no project '{project}'")
        started = time.perf_counter()
        try:
            n = export_write(project=proj, fmt=fmt, out=out, with_confidence=with_confidence)
        except ApplicationError as exc:
            # A refused export leaves no half-written file behind.
            out.unlink(missing_ok=True)
            raise CommandError(exc.message) from None
        self.stdout.write(f"exported {n} pairs to {out} in {time.perf_counter() - started:.1f} s")
