from django.urls import path

from curation.judges import views

app_name = "judges"
urlpatterns = [
    path("projects/<slug:slug>/ai-annotators/", views.annotators, name="annotators"),
    path(
        "projects/<slug:slug>/ai-annotators/<int:annotator_id>/",
        views.annotator_edit,
        name="edit",
    ),
    path(
        "projects/<slug:slug>/ai-annotators/<int:annotator_id>/run/",
        views.annotator_run,
        name="run",
    ),
    path(
        "projects/<slug:slug>/ai-annotators/runs/<int:run_id>/", views.run_detail, name="run_detail"
    ),
    path(
        "projects/<slug:slug>/ai-annotators/runs/<int:run_id>/cancel/",
        views.run_cancel,
        name="run_cancel",
    ),
]
