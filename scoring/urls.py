from django.urls import path

from scoring import views

app_name = "scoring"
urlpatterns = [
    path("projects/<slug:slug>/models/", views.models, name="models"),
    path("projects/<slug:slug>/models/train/", views.model_train, name="train"),
    path("projects/<slug:slug>/models/settings/", views.scoring_settings, name="settings"),
    path("projects/<slug:slug>/models/runs/<int:run_id>/", views.training_run_detail, name="run"),
    path(
        "projects/<slug:slug>/models/runs/<int:run_id>/cancel/",
        views.training_run_cancel_view,
        name="run_cancel",
    ),
]
