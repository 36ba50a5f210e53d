from django.urls import path

from annotation import views

app_name = "annotation"
urlpatterns = [
    path("", views.home, name="home"),
    path("projects/<slug:slug>/", views.project_detail, name="project"),
    path("projects/<slug:slug>/import/", views.import_upload, name="import"),
    path("projects/<slug:slug>/imports/<int:job_id>/", views.import_job_detail, name="import_job"),
    path("projects/<slug:slug>/export.<str:ext>", views.export_download, name="export"),
]
