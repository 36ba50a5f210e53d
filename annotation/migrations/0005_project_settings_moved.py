# The routing and scoring settings left Project for their apps' one-to-one settings models
# (routing.RoutingSettings, scoring.ScoringSettings), whose migrations copied the values.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("annotation", "0004_importjob_run"),
        ("scoring", "0003_trainingrun_scoringsettings"),
        ("routing", "0002_routingsettings_run"),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="project", name="project_budget_fraction_0_1"),
        migrations.RemoveConstraint(model_name="project", name="project_ensemble_members_1_32"),
        migrations.RemoveConstraint(model_name="project", name="project_auto_train_every_min_1"),
        migrations.RemoveField(model_name="project", name="auto_train_every"),
        migrations.RemoveField(model_name="project", name="ensemble_members"),
        migrations.RemoveField(model_name="project", name="human_budget"),
        migrations.RemoveField(model_name="project", name="human_budget_fraction"),
        migrations.RemoveField(model_name="project", name="routing_policy"),
    ]
