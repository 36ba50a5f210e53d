from django.urls import path

from annotation.views import data

app_name = "annotation"
urlpatterns = [
    path("", data.home, name="home"),
    path("projects/<slug:slug>/", data.project_detail, name="project"),
    path("projects/<slug:slug>/import/", data.import_upload, name="import"),
    path("projects/<slug:slug>/imports/<int:job_id>/", data.import_job_detail, name="import_job"),
    path("projects/<slug:slug>/export.<str:ext>", data.export_download, name="export"),
]
