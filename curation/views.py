"""The curation page (flags, actions, undo, policy, "Find noisy pairs") and the annotators'
reliability page. Admins and reviewers see and act; only admins start runs and set the
policy. Anyone else gets a 404 (project_get_for)."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect

from core.exceptions import ApplicationError
from core.roles import ADMIN, REVIEWERS, Role
from core.views import project_view, run_cancel_message, run_progress_response
from curation.forms import CurationActionForm, CurationPolicyForm, FlagFilterForm
from curation.models import Action, CurationPolicy
from curation.selectors import (
    annotator_reliability_report,
    curation_action_get,
    curation_action_list,
    curation_run_get,
    curation_run_latest,
    curation_run_list,
    flagged_comparison_list,
)
from curation.services.actions import curation_action_apply, curation_action_undo
from curation.services.policy import curation_policy_set
from curation.services.reliability import (
    MIN_OVERLAP_COMPARISONS,
    annotator_reliability_refresh_start,
)
from curation.services.runs import curation_run_cancel, curation_run_start

PAGE_SIZE = 25


def _is_admin(request: HttpRequest, project) -> bool:
    return request.user.is_superuser or project.member_role == Role.ADMIN


def _page(
    request: HttpRequest,
    project,
    *,
    error: str = "",
    policy_form: CurationPolicyForm | None = None,
    status: int = 200,
) -> HttpResponse:
    filters = FlagFilterForm(request.GET)
    chosen = filters.filters()
    run = curation_run_latest(project=project)
    page = Paginator(
        flagged_comparison_list(project=project, run=run, **chosen), PAGE_SIZE
    ).get_page(request.GET.get("page"))
    policy = CurationPolicy.objects.filter(project=project).first()
    context = {
        "project": project,
        "is_admin": _is_admin(request, project),
        "filters": filters,
        "query": urlencode({k: v for k, v in chosen.items() if v}),
        "run": run,
        "runs": curation_run_list(project=project),
        "page": page,
        "actions": curation_action_list(project=project),
        "policy": policy,
        "policy_form": policy_form or CurationPolicyForm(instance=policy),
        "error": error,
    }
    template = "curation/curation.html"
    if request.htmx and request.htmx.target == "flags":
        template += "#flags"
    return render(request, template, context, status=status)


def _back(request: HttpRequest, project) -> HttpResponse:
    """Back to the page with the filters and page the user was on."""
    url = reverse("curation:curation", args=[project.slug])
    query = request.POST.get("next_query", "")
    if query and not query.startswith(("/", "http")):
        url = f"{url}?{query}"
    if request.htmx:
        return HttpResponseClientRedirect(url)
    return redirect(url)


@project_view(roles=REVIEWERS)
def curation(request: HttpRequest, project) -> HttpResponse:
    return _page(request, project)


@project_view(roles=ADMIN)
@require_POST
def run_start(request: HttpRequest, project) -> HttpResponse:
    try:
        run = curation_run_start(project=project, user=request.user)
    except ApplicationError as exc:
        return _page(request, project, error=exc.message, status=400)
    messages.success(request, f"Looking for noisy pairs (run #{run.pk}).")
    return _back(request, project)


@project_view(roles=REVIEWERS)
def run_detail(request: HttpRequest, project, run_id: int) -> HttpResponse:
    """The progress partial of one run, polled by the page."""
    run = curation_run_get(project=project, run_id=run_id)
    context = {"project": project, "r": run, "is_admin": _is_admin(request, project)}
    return run_progress_response(request, "curation/curation.html#run", context, run=run)


@project_view(roles=ADMIN)
@require_POST
def run_cancel(request: HttpRequest, project, run_id: int) -> HttpResponse:
    run = curation_run_cancel(run=curation_run_get(project=project, run_id=run_id))
    messages.info(request, run_cancel_message(f"Run #{run.pk}", run))
    return _back(request, project)


@project_view(roles=REVIEWERS)
@require_POST
def act(request: HttpRequest, project) -> HttpResponse:
    form = CurationActionForm(request.POST)
    if not form.is_valid():
        error = " ".join(e for errors in form.errors.values() for e in errors)
        return _page(request, project, error=error, status=400)
    try:
        done = curation_action_apply(
            project=project,
            comparison_ids=form.cleaned_data["comparisons"],
            action=form.cleaned_data["action"],
            actor=request.user,
        )
    except ApplicationError as exc:
        return _page(request, project, error=exc.message, status=400)
    label = Action(form.cleaned_data["action"]).label.lower()
    messages.success(request, f"{label.capitalize()}: {len(done)} pair{'s' * (len(done) != 1)}.")
    return _back(request, project)


@project_view(roles=REVIEWERS)
@require_POST
def undo(request: HttpRequest, project, action_id: int) -> HttpResponse:
    action = curation_action_get(project=project, action_id=action_id)
    try:
        curation_action_undo(action=action, actor=request.user)
    except ApplicationError as exc:
        return _page(request, project, error=exc.message, status=400)
    messages.success(
        request, f"Undone: {action.get_action_display().lower()} on #{action.comparison_id}."
    )
    return _back(request, project)


@project_view(roles=ADMIN)
@require_POST
def policy(request: HttpRequest, project) -> HttpResponse:
    current = CurationPolicy.objects.filter(project=project).first()
    form = CurationPolicyForm(request.POST, instance=current)
    if not form.is_valid():
        return _page(request, project, policy_form=form, status=400)
    try:
        saved = curation_policy_set(project=project, actor=request.user, **form.cleaned_data)
    except ApplicationError as exc:
        form.add_error(None, exc.message)
        return _page(request, project, policy_form=form, status=400)
    state = "on" if saved.enabled else "off"
    messages.success(request, f"Policy saved ({state}): {saved.name}.")
    return _back(request, project)


@project_view(roles=REVIEWERS)
def annotators(request: HttpRequest, project) -> HttpResponse:
    context = {
        "project": project,
        "is_admin": _is_admin(request, project),
        "report": annotator_reliability_report(project=project),
        "threshold": MIN_OVERLAP_COMPARISONS,
    }
    return render(request, "curation/annotators.html", context)


@project_view(roles=ADMIN)
@require_POST
def reliability_refresh(request: HttpRequest, project) -> HttpResponse:
    annotator_reliability_refresh_start(project=project)
    messages.info(
        request,
        "Estimating reliability on a worker; reload this page in a moment to see the result.",
    )
    return redirect("curation:annotators", slug=project.slug)
