from django.contrib import admin

from curation.models import (
    AnnotatorReliability,
    CurationAction,
    CurationPolicy,
    CurationRun,
    NoiseFlag,
)


@admin.register(CurationRun)
class CurationRunAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "project",
        "status",
        "model_version",
        "pairs",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status"]
    list_select_related = ["project"]
    raw_id_fields = ["model_version"]


@admin.register(NoiseFlag)
class NoiseFlagAdmin(admin.ModelAdmin):
    list_display = ["comparison", "run", "detector", "score", "state"]
    list_filter = ["detector", "state"]
    raw_id_fields = ["comparison", "run", "model_version", "action"]
    show_full_result_count = False


@admin.register(CurationAction)
class CurationActionAdmin(admin.ModelAdmin):
    """The audit log: read-only here, so that its history cannot be edited by hand."""

    list_display = ["id", "comparison", "action", "actor", "policy_name", "created_at", "undone_by"]
    list_filter = ["action"]
    raw_id_fields = ["comparison", "actor", "undone_by"]
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(CurationPolicy)
class CurationPolicyAdmin(admin.ModelAdmin):
    list_display = ["project", "enabled", "detector", "threshold", "action", "updated_by"]


@admin.register(AnnotatorReliability)
class AnnotatorReliabilityAdmin(admin.ModelAdmin):
    list_display = ["project", "user", "judgements", "overlapping", "dawid_skene", "mace"]
    list_select_related = ["project", "user"]
