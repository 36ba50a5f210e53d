"""The AI annotators page of a project (admins only): annotators, runs, failures, agreement."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect, HttpResponseStopPolling

from annotation.exceptions import ApplicationError
from annotation.models import Membership
from annotation.selectors import project_get_for
from curation.judges.forms import AnnotatorForm, RunForm
from curation.judges.selectors import (
    annotator_get,
    annotator_list,
    run_get,
    run_list,
    verdict_failures,
)
from curation.judges.services import (
    ai_judging_run_cancel,
    ai_judging_run_start,
    annotator_create,
    annotator_update,
)

ADMIN = (Membership.Role.ADMIN,)


def _page(request: HttpRequest, project, *, form=None, error: str = "", status: int = 200):
    context = {
        "project": project,
        "annotators": annotator_list(project=project),
        "runs": run_list(project=project),
        "failures": verdict_failures(project=project),
        "form": form or AnnotatorForm(),
        "run_form": RunForm(auto_id=False),
        "error": error,
    }
    return render(request, "judges/annotators.html", context, status=status)


def _to_page(request: HttpRequest, project) -> HttpResponse:
    if request.htmx:
        return HttpResponseClientRedirect(reverse("judges:annotators", args=[project.slug]))
    return redirect("judges:annotators", slug=project.slug)


@login_required
def annotators(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_get_for(user=request.user, slug=slug, roles=ADMIN)
    if request.method != "POST":
        return _page(request, project)
    form = AnnotatorForm(request.POST)
    if form.is_valid():
        try:
            annotator = annotator_create(
                project=project,
                name=form.cleaned_data["name"],
                kind=form.cleaned_data["kind"],
                settings=form.settings(),
                api_key=form.cleaned_data["api_key"],
                is_active=form.cleaned_data["is_active"],
            )
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"AI annotator {annotator.source_name} created.")
            return _to_page(request, project)
    return _page(request, project, form=form, status=400)


@login_required
def annotator_edit(request: HttpRequest, slug: str, annotator_id: int) -> HttpResponse:
    project = project_get_for(user=request.user, slug=slug, roles=ADMIN)
    annotator = annotator_get(project=project, annotator_id=annotator_id)
    initial = AnnotatorForm.initial_for(annotator)
    if request.method != "POST":
        form = AnnotatorForm(initial=initial, annotator=annotator)
        return render(
            request, "judges/edit.html", {"project": project, "annotator": annotator, "form": form}
        )
    form = AnnotatorForm(request.POST, initial=initial, annotator=annotator)
    if form.is_valid():
        try:
            annotator_update(
                annotator=annotator,
                settings=form.settings(),
                api_key=form.cleaned_data["api_key"],
                clear_api_key=form.cleaned_data["clear_api_key"],
                is_active=form.cleaned_data["is_active"],
            )
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"{annotator.source_name} saved.")
            return _to_page(request, project)
    context = {"project": project, "annotator": annotator, "form": form}
    return render(request, "judges/edit.html", context, status=400)


@login_required
@require_POST
def annotator_run(request: HttpRequest, slug: str, annotator_id: int) -> HttpResponse:
    project = project_get_for(user=request.user, slug=slug, roles=ADMIN)
    annotator = annotator_get(project=project, annotator_id=annotator_id)
    form = RunForm(request.POST)
    if not form.is_valid():
        return _page(request, project, error="Choose which comparisons to judge.", status=400)
    try:
        run = ai_judging_run_start(
            annotator=annotator, scope=form.cleaned_data["scope"], created_by=request.user
        )
    except ApplicationError as exc:
        return _page(request, project, error=exc.message, status=400)
    messages.success(request, f"Run #{run.id} of {annotator.source_name} queued.")
    return _to_page(request, project)


@login_required
def run_detail(request: HttpRequest, slug: str, run_id: int) -> HttpResponse:
    """The progress partial of one run (polled by the page); 286 stops polling once done."""
    project = project_get_for(user=request.user, slug=slug, roles=ADMIN)
    run = run_get(project=project, run_id=run_id)
    response = render(request, "judges/annotators.html#run", {"project": project, "run": run})
    if run.is_finished:
        response.status_code = HttpResponseStopPolling.status_code
    return response


@login_required
@require_POST
def run_cancel(request: HttpRequest, slug: str, run_id: int) -> HttpResponse:
    project = project_get_for(user=request.user, slug=slug, roles=ADMIN)
    run = ai_judging_run_cancel(run=run_get(project=project, run_id=run_id))
    messages.info(request, f"Run #{run.id} is {run.get_status_display().lower()}.")
    return _to_page(request, project)
