from __future__ import annotations

import tempfile

from django.contrib import messages
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from annotation.forms import ImportForm
from annotation.selectors import import_job_get, import_job_list, project_stats
from annotation.services.agreement import project_agreement
from annotation.services.exporting import (
    EXPORT_EXTENSIONS,
    export_check,
    export_jsonl_chunks,
    export_write,
)
from annotation.services.exporting_media import export_has_media
from annotation.services.importing import import_job_cancel, import_job_start
from core.exceptions import ApplicationError
from core.roles import ADMIN, MEMBERS, REVIEWERS, Role, member_role
from core.views import project_view, run_cancel_message, run_progress_response


@project_view(roles=MEMBERS)
def project_detail(request: HttpRequest, project) -> HttpResponse:
    role = member_role(user=request.user, project=project)
    can_review = role in REVIEWERS
    agreement = project_agreement(project=project)
    return render(
        request,
        "annotation/project.html",
        {
            "project": project,
            "stats": project_stats(project=project),
            "jobs": import_job_list(project=project),
            "is_admin": role == Role.ADMIN,
            # Which export links the admin sees: archive and Parquet for images and audio.
            "has_media": role == Role.ADMIN and export_has_media(project=project),
            "can_review": can_review,
            "agreement": agreement,
            # Annotators see how well the project agrees, not how each of the others does.
            "annotator_agreement": agreement.annotators if can_review else None,
        },
    )


@project_view(roles=ADMIN)
@require_http_methods(["GET", "POST"])
def import_upload(request: HttpRequest, project) -> HttpResponse:
    form = ImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            job = import_job_start(
                project=project,
                uploaded_file=data["file"],
                fmt=data["format"],
                options={"pairs": data["pairs"], "max_pairs": data["max_pairs"]},
                created_by=request.user,
            )
        except ApplicationError as exc:
            form.add_error("file", exc.message)
        else:
            return redirect("annotation:import_job", slug=project.slug, job_id=job.id)
    status = 400 if form.errors else 200
    context = {"project": project, "form": form, "has_media": export_has_media(project=project)}
    return render(request, "annotation/import.html", context, status=status)


@project_view(roles=ADMIN)
def import_job_detail(request: HttpRequest, project, job_id: int) -> HttpResponse:
    job = import_job_get(project=project, job_id=job_id)
    context = {"project": project, "job": job}
    if request.htmx:
        return run_progress_response(
            request, "annotation/import_job.html#progress", context, run=job
        )
    return render(request, "annotation/import_job.html", context)


@project_view(roles=ADMIN)
@require_POST
def import_job_cancel_view(request: HttpRequest, project, job_id: int) -> HttpResponse:
    job = import_job_cancel(job=import_job_get(project=project, job_id=job_id))
    messages.info(request, run_cancel_message(f"Import #{job.id}", job))
    return redirect("annotation:import_job", slug=project.slug, job_id=job.id)


@project_view(roles=ADMIN)
def export_download(request: HttpRequest, project, ext: str) -> HttpResponse:
    # ?confidence=1 adds the label's confidence as a column (JSONL and Parquet).
    with_confidence = request.GET.get("confidence") == "1"
    fmt = next((f for f, e in EXPORT_EXTENSIONS.items() if e == ext), None)
    if fmt is None:
        raise Http404("Unknown export format.")
    try:
        export_check(project=project, fmt=fmt)
        if fmt == "trl-jsonl":
            response = StreamingHttpResponse(
                export_jsonl_chunks(project=project, with_confidence=with_confidence),
                content_type="application/jsonl",
            )
            response["Content-Disposition"] = f'attachment; filename="{project.slug}.jsonl"'
            return response
        # Parquet's footer and the zip's directory are written last: build the file on
        # disk (not in memory), then stream it.
        out = tempfile.TemporaryFile()  # noqa: SIM115 (FileResponse closes it)
        try:
            export_write(project=project, fmt=fmt, out=out, with_confidence=with_confidence)
        except BaseException:
            out.close()
            raise
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("annotation:project", slug=project.slug)
    out.seek(0)
    return FileResponse(out, as_attachment=True, filename=f"{project.slug}.{ext}")
