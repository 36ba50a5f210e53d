# RoutingRun becomes a core Run (the AI labels it asks for are a judging run of their own);
# a project's routing policy and budget leave Project for RoutingSettings (values copied).

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models
from django.db.models.functions import Coalesce


def forwards(apps, schema_editor):
    Project = apps.get_model("annotation", "Project")
    RoutingSettings = apps.get_model("routing", "RoutingSettings")
    RoutingSettings.objects.bulk_create(
        RoutingSettings(
            project_id=pid, policy=policy, human_budget=budget, human_budget_fraction=fraction
        )
        for pid, policy, budget, fraction in Project.objects.values_list(
            "id", "routing_policy", "human_budget", "human_budget_fraction"
        )
    )
    RoutingRun = apps.get_model("routing", "RoutingRun")
    RoutingRun.objects.filter(
        status__in=("succeeded", "failed", "cancelled"), finished_at__isnull=True
    ).update(finished_at=Coalesce("started_at", "created_at"))


class Migration(migrations.Migration):

    dependencies = [
        ('annotation', '0004_importjob_run'),
        ('judges', '0002_aijudgingrun_run'),
        ('routing', '0001_initial'),
        ('scoring', '0003_trainingrun_scoringsettings'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='RoutingSettings',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('policy', models.CharField(choices=[('all_human', 'All human'), ('all_ai', 'All AI'), ('random', 'Random within budget'), ('uncertainty', 'Uncertainty'), ('gain', 'Predicted human gain (HyPER)')], default='all_human', max_length=20)),
                ('human_budget', models.PositiveIntegerField(blank=True, help_text='Comparisons that may go to humans; empty: no limit.', null=True)),
                ('human_budget_fraction', models.FloatField(blank=True, help_text="Share of the project's comparisons that may go to humans (0-1); empty means no limit. With human_budget too, the smaller one holds.", null=True)),
            ],
            options={
                'verbose_name_plural': 'routing settings',
            },
        ),
        migrations.AddField(
            model_name='routingrun',
            name='ai_judging_run',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='judges.aijudgingrun'),
        ),
        migrations.AddField(
            model_name='routingrun',
            name='apply_ai_labels',
            field=models.BooleanField(default=True),
        ),
        migrations.AddField(
            model_name='routingrun',
            name='attempts',
            field=models.PositiveSmallIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='routingrun',
            name='heartbeat_at',
            field=models.DateTimeField(default=django.utils.timezone.now),
        ),
        migrations.AddField(
            model_name='routingrun',
            name='phase',
            field=models.CharField(blank=True, max_length=40),
        ),
        migrations.AddField(
            model_name='routingrun',
            name='queue',
            field=models.CharField(default='cpu', max_length=20),
        ),
        migrations.AlterField(
            model_name='routingrun',
            name='created_by',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AlterField(
            model_name='routingrun',
            name='status',
            field=models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('succeeded', 'Succeeded'), ('failed', 'Failed'), ('cancelled', 'Cancelled')], default='queued', max_length=10),
        ),
        migrations.AddConstraint(
            model_name='routingrun',
            constraint=models.CheckConstraint(condition=models.Q(('status__in', ['queued', 'running', 'succeeded', 'failed', 'cancelled'])), name='routingrun_status_valid'),
        ),
        migrations.AddConstraint(
            model_name='routingrun',
            constraint=models.CheckConstraint(condition=models.Q(('status__in', ('queued', 'running')), ('finished_at__isnull', False), _connector='OR'), name='routingrun_finished_has_time'),
        ),
        migrations.AddField(
            model_name='routingsettings',
            name='project',
            field=models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='routing_settings', to='annotation.project'),
        ),
        migrations.RunPython(forwards, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name='routingsettings',
            constraint=models.CheckConstraint(condition=models.Q(('human_budget_fraction__isnull', True), models.Q(('human_budget_fraction__gte', 0), ('human_budget_fraction__lte', 1)), _connector='OR'), name='routingsettings_budget_fraction_0_1'),
        ),
        migrations.AddConstraint(
            model_name='routingsettings',
            constraint=models.CheckConstraint(condition=models.Q(('policy__in', ['all_human', 'all_ai', 'random', 'uncertainty', 'gain'])), name='routingsettings_policy_valid'),
        ),
        migrations.AlterField(
            model_name='routingrun',
            name='policy',
            field=models.CharField(blank=True, max_length=20),
        ),
    ]
