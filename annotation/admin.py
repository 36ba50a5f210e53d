from django.contrib import admin

from annotation.models import (
    Assignment,
    Candidate,
    Comparison,
    ImportJob,
    Judgement,
    Membership,
    Project,
    Prompt,
    RankingAssignment,
    RankingJudgement,
)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "overlap", "created_at"]
    search_fields = ["slug", "name"]
    inlines = [MembershipInline]


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "text"]
    list_filter = ["project"]
    search_fields = ["text"]


@admin.register(Candidate)
class CandidateAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "source_model", "text"]
    raw_id_fields = ["prompt"]


@admin.register(Comparison)
class ComparisonAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "status", "route", "label", "label_confidence", "priority"]
    list_filter = ["project", "status", "route", "label", "is_gold"]
    raw_id_fields = ["prompt", "candidate_a", "candidate_b", "ranking"]


@admin.register(Judgement)
class JudgementAdmin(admin.ModelAdmin):
    list_display = ["id", "comparison", "source_kind", "source_name", "choice", "created_at"]
    list_filter = ["source_kind"]
    raw_id_fields = ["comparison", "user", "assignment", "ranking_judgement"]


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ["id", "comparison", "annotator", "state", "leased_until"]
    raw_id_fields = ["comparison", "annotator"]


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "original_name", "status", "progress_done", "progress_total"]
    list_filter = ["status"]


@admin.register(RankingAssignment)
class RankingAssignmentAdmin(admin.ModelAdmin):
    list_display = ["id", "ranking", "annotator", "state", "leased_until"]
    raw_id_fields = ["ranking", "annotator"]


@admin.register(RankingJudgement)
class RankingJudgementAdmin(admin.ModelAdmin):
    list_display = ["id", "ranking", "user", "order", "created_at"]
    raw_id_fields = ["ranking", "user", "assignment"]
