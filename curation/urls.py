from django.urls import path

from curation import views

app_name = "curation"
urlpatterns = [
    path("projects/<slug:slug>/curation/", views.curation, name="curation"),
    path("projects/<slug:slug>/curation/find/", views.run_start, name="run_start"),
    path("projects/<slug:slug>/curation/runs/<int:run_id>/", views.run_detail, name="run"),
    path(
        "projects/<slug:slug>/curation/runs/<int:run_id>/cancel/",
        views.run_cancel,
        name="run_cancel",
    ),
    path("projects/<slug:slug>/curation/act/", views.act, name="act"),
    path(
        "projects/<slug:slug>/curation/actions/<int:action_id>/undo/",
        views.undo,
        name="undo",
    ),
    path("projects/<slug:slug>/curation/policy/", views.policy, name="policy"),
    path("projects/<slug:slug>/curation/annotators/", views.annotators, name="annotators"),
    path(
        "projects/<slug:slug>/curation/annotators/refresh/",
        views.reliability_refresh,
        name="reliability_refresh",
    ),
]
