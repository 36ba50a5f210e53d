from django.contrib import admin

from curation.judges.models import AIAnnotator, AIJudgingRun, AIVerdict


@admin.register(AIAnnotator)
class AIAnnotatorAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "kind", "is_active", "created_at"]
    list_filter = ["kind", "is_active"]
    # The key is write-only everywhere, the admin included.
    exclude = ["api_key"]


@admin.register(AIJudgingRun)
class AIJudgingRunAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "annotator",
        "status",
        "progress_done",
        "progress_total",
        "ok_count",
        "failed_count",
    ]
    list_filter = ["status"]
    list_select_related = ["annotator"]


@admin.register(AIVerdict)
class AIVerdictAdmin(admin.ModelAdmin):
    list_display = ["comparison", "annotator", "model_version", "status", "choice", "confidence"]
    list_filter = ["status"]
    list_select_related = ["annotator"]
    raw_id_fields = ["comparison", "run", "judgement"]
    show_full_result_count = False
