# Training becomes a core Run (TrainingRun) that produces a ModelVersion on success, so a
# failed run is no longer called a version; a project's scoring settings leave Project for
# ScoringSettings. Existing versions each get the run that made them; versions of runs that
# did not succeed had no model and go (their runs keep the history).

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


def forwards(apps, schema_editor):
    Project = apps.get_model("annotation", "Project")
    ScoringSettings = apps.get_model("scoring", "ScoringSettings")
    ModelVersion = apps.get_model("scoring", "ModelVersion")
    TrainingRun = apps.get_model("scoring", "TrainingRun")
    ScoringSettings.objects.bulk_create(
        ScoringSettings(
            project_id=pid, auto_train_every=every, ensemble_members=members
        )
        for pid, every, members in Project.objects.values_list(
            "id", "auto_train_every", "ensemble_members"
        )
    )
    for v in ModelVersion.objects.order_by("id"):
        succeeded = v.status == "succeeded" and bool(v.artifact)
        finished = v.finished_at
        if v.status in ("succeeded", "failed", "cancelled") and finished is None:
            finished = v.started_at or v.created_at
        run = TrainingRun.objects.create(
            project_id=v.project_id,
            kind=v.kind,
            config=v.config,
            trigger=v.trigger,
            queue=v.queue,
            label_count=v.label_count,
            loss_history=v.loss_history,
            status=v.status if (succeeded or v.status != "succeeded") else "failed",
            progress_done=v.progress_done,
            progress_total=v.progress_total,
            error=v.error,
            started_at=v.started_at,
            finished_at=finished,
            heartbeat_at=finished or v.started_at or v.created_at,
            model_version_id=v.pk if succeeded else None,
        )
        # created_at is auto_now_add: keep the version's time.
        TrainingRun.objects.filter(pk=run.pk).update(created_at=v.created_at)
    ModelVersion.objects.exclude(status="succeeded").delete()
    ModelVersion.objects.filter(artifact="").delete()


def backwards(apps, schema_editor):
    ModelVersion = apps.get_model("scoring", "ModelVersion")
    TrainingRun = apps.get_model("scoring", "TrainingRun")
    for run in TrainingRun.objects.exclude(model_version=None):
        ModelVersion.objects.filter(pk=run.model_version_id).update(
            status="succeeded",
            trigger=run.trigger,
            progress_done=run.progress_done,
            progress_total=run.progress_total,
            loss_history=run.loss_history,
            started_at=run.started_at,
            finished_at=run.finished_at,
        )


class Migration(migrations.Migration):

    dependencies = [
        ("annotation", "0004_importjob_run"),
        ("scoring", "0002_run_trigger_queue_label_count"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='ScoringSettings',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('auto_train_every', models.PositiveIntegerField(blank=True, help_text='Train a new reward model after this many new labels; empty: only by hand.', null=True)),
                ('ensemble_members', models.PositiveSmallIntegerField(default=5, help_text='Reward-model heads per ensemble (M).')),
                ('project', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='scoring_settings', to='annotation.project')),
            ],
            options={
                'verbose_name_plural': 'scoring settings',
                'constraints': [models.CheckConstraint(condition=models.Q(('ensemble_members__gte', 1), ('ensemble_members__lte', 32)), name='scoringsettings_ensemble_members_1_32'), models.CheckConstraint(condition=models.Q(('auto_train_every__isnull', True), ('auto_train_every__gte', 1), _connector='OR'), name='scoringsettings_auto_train_every_min_1')],
            },
        ),
        migrations.CreateModel(
            name='TrainingRun',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('status', models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('succeeded', 'Succeeded'), ('failed', 'Failed'), ('cancelled', 'Cancelled')], default='queued', max_length=10)),
                ('phase', models.CharField(blank=True, max_length=40)),
                ('progress_done', models.PositiveIntegerField(default=0)),
                ('progress_total', models.PositiveIntegerField(default=0)),
                ('heartbeat_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('attempts', models.PositiveSmallIntegerField(default=0)),
                ('queue', models.CharField(default='cpu', max_length=20)),
                ('error', models.TextField(blank=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('started_at', models.DateTimeField(blank=True, null=True)),
                ('finished_at', models.DateTimeField(blank=True, null=True)),
                ('kind', models.CharField(choices=[('heads', 'Heads on embeddings'), ('transformer', 'Fine-tuned transformer')], max_length=12)),
                ('config', models.JSONField(blank=True, default=dict)),
                ('trigger', models.CharField(choices=[('manual', 'Started by hand'), ('auto', 'Started after new labels')], default='manual', max_length=6)),
                ('label_count', models.PositiveIntegerField(default=0)),
                ('loss_history', models.JSONField(blank=True, default=list)),
                ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('model_version', models.OneToOneField(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='training_run', to='scoring.modelversion')),
                ('project', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='training_runs', to='annotation.project')),
            ],
            options={
                'indexes': [models.Index(fields=['project', '-created_at'], name='trainingrun_recent_idx')],
                'constraints': [models.CheckConstraint(condition=models.Q(('status__in', ['queued', 'running', 'succeeded', 'failed', 'cancelled'])), name='trainingrun_status_valid'), models.CheckConstraint(condition=models.Q(('status__in', ('queued', 'running')), ('finished_at__isnull', False), _connector='OR'), name='trainingrun_finished_has_time'), models.CheckConstraint(condition=models.Q(('model_version__isnull', True), ('status', 'succeeded'), _connector='OR'), name='trainingrun_version_only_when_succeeded')],
            },
        ),
        migrations.RunPython(forwards, backwards),
        migrations.RemoveField(
            model_name='modelversion',
            name='error',
        ),
        migrations.RemoveField(
            model_name='modelversion',
            name='finished_at',
        ),
        migrations.RemoveField(
            model_name='modelversion',
            name='loss_history',
        ),
        migrations.RemoveField(
            model_name='modelversion',
            name='progress_done',
        ),
        migrations.RemoveField(
            model_name='modelversion',
            name='progress_total',
        ),
        migrations.RemoveField(
            model_name='modelversion',
            name='started_at',
        ),
        migrations.RemoveField(
            model_name='modelversion',
            name='status',
        ),
        migrations.RemoveField(
            model_name='modelversion',
            name='trigger',
        ),
        migrations.AlterField(
            model_name='modelversion',
            name='artifact',
            field=models.FileField(upload_to='models/%Y/%m/'),
        ),
    ]
