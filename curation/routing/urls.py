from django.urls import path

from curation.routing import views

app_name = "routing"
urlpatterns = [
    path("projects/<slug:slug>/routing/", views.routing_page, name="page"),
    path("projects/<slug:slug>/routing/settings/", views.routing_settings, name="settings"),
    path("projects/<slug:slug>/routing/run/", views.routing_run, name="run"),
    path(
        "projects/<slug:slug>/routing/runs/<int:run_id>/",
        views.routing_run_detail,
        name="run_detail",
    ),
]
