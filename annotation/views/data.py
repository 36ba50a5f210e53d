from __future__ import annotations

import tempfile

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods
from django_htmx.http import HttpResponseStopPolling

from annotation.exceptions import ApplicationError
from annotation.forms import ImportForm
from annotation.models import Membership
from annotation.selectors import (
    import_job_get,
    import_job_list,
    project_get_for,
    project_role_for,
    project_stats,
)
from annotation.services.agreement import project_agreement
from annotation.services.exporting import export_jsonl_chunks, export_parquet_write
from annotation.services.importing import import_job_create

ADMIN = (Membership.Role.ADMIN,)


@login_required
def project_detail(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_get_for(user=request.user, slug=slug)
    role = project_role_for(user=request.user, project=project)
    can_review = role in (Membership.Role.ADMIN, Membership.Role.REVIEWER)
    agreement = project_agreement(project=project)
    return render(
        request,
        "annotation/project.html",
        {
            "project": project,
            "stats": project_stats(project=project),
            "jobs": import_job_list(project=project),
            "is_admin": role == Membership.Role.ADMIN,
            "can_review": can_review,
            "agreement": agreement,
            # Annotators see how well the project agrees, not how each of the others does.
            "annotator_agreement": agreement.annotators if can_review else None,
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def import_upload(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_get_for(user=request.user, slug=slug, roles=ADMIN)
    form = ImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            job = import_job_create(
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
    return render(
        request, "annotation/import.html", {"project": project, "form": form}, status=status
    )


@login_required
def import_job_detail(request: HttpRequest, slug: str, job_id: int) -> HttpResponse:
    project = project_get_for(user=request.user, slug=slug, roles=ADMIN)
    job = import_job_get(project=project, job_id=job_id)
    context = {"project": project, "job": job}
    if request.htmx:
        response = render(request, "annotation/import_job.html#progress", context)
        if job.is_finished:
            response.status_code = HttpResponseStopPolling.status_code
        return response
    return render(request, "annotation/import_job.html", context)


@login_required
def export_download(request: HttpRequest, slug: str, ext: str) -> HttpResponse:
    project = project_get_for(user=request.user, slug=slug, roles=ADMIN)
    # ?confidence=1 adds the label's confidence as a column.
    with_confidence = request.GET.get("confidence") == "1"
    if ext == "jsonl":
        response = StreamingHttpResponse(
            export_jsonl_chunks(project=project, with_confidence=with_confidence),
            content_type="application/jsonl",
        )
        response["Content-Disposition"] = f'attachment; filename="{project.slug}.jsonl"'
        return response
    if ext == "parquet":
        # Parquet's footer is written last: build the file on disk, then stream it.
        out = tempfile.TemporaryFile()  # noqa: SIM115 (FileResponse closes it)
        export_parquet_write(project=project, out=out, with_confidence=with_confidence)
        out.seek(0)
        return FileResponse(out, as_attachment=True, filename=f"{project.slug}.parquet")
    raise Http404("Unknown export format.")
