# CurationRun becomes a core Run (heartbeat, attempts, queue; the run constraints).

import django.utils.timezone
from django.conf import settings
from django.db import migrations, models
from django.db.models.functions import Coalesce


def fill(apps, schema_editor):
    CurationRun = apps.get_model("curation", "CurationRun")
    CurationRun.objects.filter(
        status__in=("succeeded", "failed", "cancelled"), finished_at__isnull=True
    ).update(finished_at=Coalesce("started_at", "created_at"))


class Migration(migrations.Migration):

    dependencies = [
        ('annotation', '0004_importjob_run'),
        ('curation', '0003_annotator_reliability'),
        ('scoring', '0003_trainingrun_scoringsettings'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='curationrun',
            name='attempts',
            field=models.PositiveSmallIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='curationrun',
            name='heartbeat_at',
            field=models.DateTimeField(default=django.utils.timezone.now),
        ),
        migrations.AddField(
            model_name='curationrun',
            name='queue',
            field=models.CharField(default='cpu', max_length=20),
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name='curationrun',
            constraint=models.CheckConstraint(condition=models.Q(('status__in', ['queued', 'running', 'succeeded', 'failed', 'cancelled'])), name='curationrun_status_valid'),
        ),
        migrations.AddConstraint(
            model_name='curationrun',
            constraint=models.CheckConstraint(condition=models.Q(('status__in', ('queued', 'running')), ('finished_at__isnull', False), _connector='OR'), name='curationrun_finished_has_time'),
        ),
    ]
