# ImportJob becomes a core Run: rows_done/rows_total are progress_done/progress_total, and it
# gains the lifecycle's fields (heartbeat, attempts, queue, error) and constraints.

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models
from django.db.models.functions import Coalesce

FINISHED = ("succeeded", "failed", "cancelled")


def fill(apps, schema_editor):
    ImportJob = apps.get_model("annotation", "ImportJob")
    ImportJob.objects.filter(progress_total__isnull=True).update(progress_total=0)
    ImportJob.objects.filter(status__in=FINISHED, finished_at__isnull=True).update(
        finished_at=Coalesce("started_at", "created_at")
    )


class Migration(migrations.Migration):

    dependencies = [
        ("annotation", "0003_scoring_curation_routing_fields"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RenameField(
            model_name="importjob", old_name="rows_done", new_name="progress_done"
        ),
        migrations.RenameField(
            model_name="importjob", old_name="rows_total", new_name="progress_total"
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="importjob",
            name="progress_total",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="importjob",
            name="attempts",
            field=models.PositiveSmallIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="importjob",
            name="error",
            field=models.TextField(blank=True),
        ),
        migrations.AddField(
            model_name="importjob",
            name="heartbeat_at",
            field=models.DateTimeField(default=django.utils.timezone.now),
        ),
        migrations.AddField(
            model_name="importjob",
            name="queue",
            field=models.CharField(default="cpu", max_length=20),
        ),
        migrations.AddField(
            model_name="importjob",
            name="source_path",
            field=models.CharField(blank=True, max_length=1000),
        ),
        migrations.AlterField(
            model_name="importjob",
            name="created_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AlterField(
            model_name="importjob",
            name="file",
            field=models.FileField(blank=True, upload_to="imports/%Y/%m/"),
        ),
        migrations.AlterField(
            model_name="importjob",
            name="phase",
            field=models.CharField(blank=True, max_length=40),
        ),
        migrations.AlterField(
            model_name="importjob",
            name="status",
            field=models.CharField(
                choices=[
                    ("queued", "Queued"),
                    ("running", "Running"),
                    ("succeeded", "Succeeded"),
                    ("failed", "Failed"),
                    ("cancelled", "Cancelled"),
                ],
                default="queued",
                max_length=10,
            ),
        ),
        migrations.AddConstraint(
            model_name="importjob",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("status__in", ["queued", "running", "succeeded", "failed", "cancelled"])
                ),
                name="importjob_status_valid",
            ),
        ),
        migrations.AddConstraint(
            model_name="importjob",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("status__in", ("queued", "running")),
                    ("finished_at__isnull", False),
                    _connector="OR",
                ),
                name="importjob_finished_has_time",
            ),
        ),
        migrations.AddConstraint(
            model_name="importjob",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(models.Q(("file", ""), _negated=True), ("source_path", "")),
                    models.Q(("file", ""), models.Q(("source_path", ""), _negated=True)),
                    _connector="OR",
                ),
                name="importjob_one_source",
            ),
        ),
    ]
