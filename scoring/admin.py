from django.contrib import admin

from scoring.models import Embedding, ModelVersion, Score, ScoringSettings, TrainingRun


@admin.register(Embedding)
class EmbeddingAdmin(admin.ModelAdmin):
    list_display = ["content_hash", "encoder", "dim", "dtype", "created_at"]
    list_filter = ["encoder", "dtype"]
    search_fields = ["content_hash"]
    exclude = ["vector"]
    show_full_result_count = False


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "kind", "status", "attempts", "created_at", "finished_at"]
    list_filter = ["kind", "status"]
    list_select_related = ["project"]


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "kind", "is_active", "created_at"]
    list_filter = ["kind", "is_active"]
    list_select_related = ["project"]


@admin.register(ScoringSettings)
class ScoringSettingsAdmin(admin.ModelAdmin):
    list_display = ["project", "auto_train_every", "ensemble_members"]


@admin.register(Score)
class ScoreAdmin(admin.ModelAdmin):
    list_display = ["comparison", "model_version", "p_a", "spread"]
    list_select_related = ["model_version"]
    raw_id_fields = ["comparison", "model_version"]
    show_full_result_count = False
