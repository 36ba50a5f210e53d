from django.urls import path

from scoring import views

app_name = "scoring"
urlpatterns = [
    path("projects/<slug:slug>/models/", views.models, name="models"),
    path("projects/<slug:slug>/models/train/", views.model_train, name="train"),
    path(
        "projects/<slug:slug>/models/<int:version_id>/",
        views.model_version_detail,
        name="version",
    ),
    path(
        "projects/<slug:slug>/models/<int:version_id>/cancel/",
        views.model_cancel,
        name="cancel",
    ),
]
