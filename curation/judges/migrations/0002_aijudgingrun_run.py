# AIJudgingRun becomes a core Run: done/total are progress_done/progress_total.

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models
from django.db.models.functions import Coalesce


def fill(apps, schema_editor):
    AIJudgingRun = apps.get_model("judges", "AIJudgingRun")
    AIJudgingRun.objects.filter(
        status__in=("succeeded", "failed", "cancelled"), finished_at__isnull=True
    ).update(finished_at=Coalesce("started_at", "created_at"))


class Migration(migrations.Migration):

    dependencies = [
        ('annotation', '0004_importjob_run'),
        ('judges', '0001_initial'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RenameField(
            model_name='aijudgingrun',
            old_name='done',
            new_name='progress_done',
        ),
        migrations.RenameField(
            model_name='aijudgingrun',
            old_name='total',
            new_name='progress_total',
        ),
        migrations.AddField(
            model_name='aijudgingrun',
            name='attempts',
            field=models.PositiveSmallIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='aijudgingrun',
            name='heartbeat_at',
            field=models.DateTimeField(default=django.utils.timezone.now),
        ),
        migrations.AddField(
            model_name='aijudgingrun',
            name='phase',
            field=models.CharField(blank=True, max_length=40),
        ),
        migrations.AddField(
            model_name='aijudgingrun',
            name='queue',
            field=models.CharField(default='cpu', max_length=20),
        ),
        migrations.AlterField(
            model_name='aijudgingrun',
            name='created_by',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name='aijudgingrun',
            constraint=models.CheckConstraint(condition=models.Q(('status__in', ['queued', 'running', 'succeeded', 'failed', 'cancelled'])), name='aijudgingrun_status_valid'),
        ),
        migrations.AddConstraint(
            model_name='aijudgingrun',
            constraint=models.CheckConstraint(condition=models.Q(('status__in', ('queued', 'running')), ('finished_at__isnull', False), _connector='OR'), name='aijudgingrun_finished_has_time'),
        ),
    ]
