from django.urls import path

from annotation.views import data, labelling, media, people, ranking, review

app_name = "annotation"
urlpatterns = [
    path("", people.home, name="home"),
    path("projects/<slug:slug>/", data.project_detail, name="project"),
    path("projects/<slug:slug>/import/", data.import_upload, name="import"),
    path("projects/<slug:slug>/imports/<int:job_id>/", data.import_job_detail, name="import_job"),
    path(
        "projects/<slug:slug>/imports/<int:job_id>/cancel/",
        data.import_job_cancel_view,
        name="import_job_cancel",
    ),
    path("projects/<slug:slug>/export.<str:ext>", data.export_download, name="export"),
    # "<sha256><ext>": a stored image or audio, to members of a project that uses it.
    path("projects/<slug:slug>/media/<str:name>", media.media, name="media"),
    path("projects/<slug:slug>/members/", people.members, name="members"),
    path("projects/<slug:slug>/members/add/", people.member_add, name="member_add"),
    path(
        "projects/<slug:slug>/members/<int:membership_id>/role/",
        people.member_role,
        name="member_role",
    ),
    path(
        "projects/<slug:slug>/members/<int:membership_id>/remove/",
        people.member_remove,
        name="member_remove",
    ),
    path("projects/<slug:slug>/settings/", people.project_settings, name="settings"),
    path(
        "projects/<slug:slug>/settings/preview/", people.settings_preview, name="settings_preview"
    ),
    path("projects/<slug:slug>/settings/gold/", people.gold_set, name="gold"),
    path("projects/<slug:slug>/review/", review.review, name="review"),
    path(
        "projects/<slug:slug>/review/<int:comparison_id>/",
        review.review_resolve,
        name="review_resolve",
    ),
    path("projects/<slug:slug>/label/", labelling.label, name="label"),
    path("projects/<slug:slug>/label/undo/", labelling.label_undo, name="label_undo"),
    path(
        "projects/<slug:slug>/label/<uuid:key>/submit/",
        labelling.label_submit,
        name="label_submit",
    ),
    path("projects/<slug:slug>/label/<uuid:key>/skip/", labelling.label_skip, name="label_skip"),
    path(
        "projects/<slug:slug>/label/<uuid:key>/played/",
        labelling.label_played,
        name="label_played",
    ),
    path("projects/<slug:slug>/rank/<uuid:key>/submit/", ranking.rank_submit, name="rank_submit"),
    path("projects/<slug:slug>/rank/<uuid:key>/skip/", ranking.rank_skip, name="rank_skip"),
    path("projects/<slug:slug>/rank/<uuid:key>/played/", ranking.rank_played, name="rank_played"),
]
