from django.contrib import admin

from curation.routing.models import RoutingDecision, RoutingRun


@admin.register(RoutingRun)
class RoutingRunAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "status", "trigger", "policy", "policy_used", "created_at")
    list_filter = ("status", "trigger", "policy")
    readonly_fields = ("counts", "message", "error")


@admin.register(RoutingDecision)
class RoutingDecisionAdmin(admin.ModelAdmin):
    list_display = ("id", "comparison", "route", "policy", "score", "priority", "created_at")
    list_filter = ("route", "policy")
    raw_id_fields = ("comparison", "run", "model_version")
