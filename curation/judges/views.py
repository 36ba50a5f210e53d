"""The AI annotators page of a project (admins only): annotators, runs, failures, agreement."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect

from core.exceptions import ApplicationError
from core.roles import ADMIN
from core.views import project_view, run_cancel_message, run_progress_response
from curation.judges.forms import AnnotatorForm, RunForm
from curation.judges.selectors import (
    annotator_get,
    annotator_list,
    run_get,
    run_list,
    verdict_failures,
)
from curation.judges.services.annotators import annotator_create, annotator_update
from curation.judges.services.runs import ai_judging_run_cancel, ai_judging_run_start


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


@project_view(roles=ADMIN)
def annotators(request: HttpRequest, project) -> HttpResponse:
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


@project_view(roles=ADMIN)
def annotator_edit(request: HttpRequest, project, annotator_id: int) -> HttpResponse:
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


@project_view(roles=ADMIN)
@require_POST
def annotator_run(request: HttpRequest, project, annotator_id: int) -> HttpResponse:
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


@project_view(roles=ADMIN)
def run_detail(request: HttpRequest, project, run_id: int) -> HttpResponse:
    """The progress partial of one run, polled by the page."""
    run = run_get(project=project, run_id=run_id)
    context = {"project": project, "run": run}
    return run_progress_response(request, "judges/annotators.html#run", context, run=run)


@project_view(roles=ADMIN)
@require_POST
def run_cancel(request: HttpRequest, project, run_id: int) -> HttpResponse:
    run = ai_judging_run_cancel(run=run_get(project=project, run_id=run_id))
    messages.info(request, run_cancel_message(f"Run #{run.id}", run))
    return _to_page(request, project)
