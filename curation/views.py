"""The curation page (flags, actions, undo, policy, "Find noisy pairs") and the annotators'
reliability page. Admins and reviewers see and act; only admins start runs and set the
policy. Anyone else gets a 404 (project_get_for)."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect, HttpResponseStopPolling

from annotation.exceptions import ApplicationError
from annotation.models import Membership
from annotation.selectors import project_get_for
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
from curation.services import (
    MIN_OVERLAP_COMPARISONS,
    annotator_reliability_refresh_start,
    curation_action_apply,
    curation_action_undo,
    curation_policy_set,
    curation_run_cancel,
    curation_run_start,
)

ADMIN = (Membership.Role.ADMIN,)
REVIEWERS = (Membership.Role.ADMIN, Membership.Role.REVIEWER)
PAGE_SIZE = 25


def _is_admin(request: HttpRequest, project) -> bool:
    return request.user.is_superuser or project.member_role == Membership.Role.ADMIN


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


@login_required
def curation(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_get_for(user=request.user, slug=slug, roles=REVIEWERS)
    return _page(request, project)


@login_required
@require_POST
def run_start(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_get_for(user=request.user, slug=slug, roles=ADMIN)
    try:
        run = curation_run_start(project=project, user=request.user)
    except ApplicationError as exc:
        return _page(request, project, error=exc.message, status=400)
    messages.success(request, f"Looking for noisy pairs (run #{run.pk}).")
    return _back(request, project)


@login_required
def run_detail(request: HttpRequest, slug: str, run_id: int) -> HttpResponse:
    """The progress partial of one run (polled); 286 stops the polling once it is done."""
    project = project_get_for(user=request.user, slug=slug, roles=REVIEWERS)
    run = curation_run_get(project=project, run_id=run_id)
    context = {"project": project, "r": run, "is_admin": _is_admin(request, project)}
    response = render(request, "curation/curation.html#run", context)
    if run.is_finished:
        response.status_code = HttpResponseStopPolling.status_code
    return response


@login_required
@require_POST
def run_cancel(request: HttpRequest, slug: str, run_id: int) -> HttpResponse:
    project = project_get_for(user=request.user, slug=slug, roles=ADMIN)
    run = curation_run_cancel(run=curation_run_get(project=project, run_id=run_id))
    messages.info(request, f"Run #{run.pk} is {run.get_status_display().lower()}.")
    return _back(request, project)


@login_required
@require_POST
def act(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_get_for(user=request.user, slug=slug, roles=REVIEWERS)
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


@login_required
@require_POST
def undo(request: HttpRequest, slug: str, action_id: int) -> HttpResponse:
    project = project_get_for(user=request.user, slug=slug, roles=REVIEWERS)
    action = curation_action_get(project=project, action_id=action_id)
    try:
        curation_action_undo(action=action, actor=request.user)
    except ApplicationError as exc:
        return _page(request, project, error=exc.message, status=400)
    messages.success(
        request, f"Undone: {action.get_action_display().lower()} on #{action.comparison_id}."
    )
    return _back(request, project)


@login_required
@require_POST
def policy(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_get_for(user=request.user, slug=slug, roles=ADMIN)
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


@login_required
def annotators(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_get_for(user=request.user, slug=slug, roles=REVIEWERS)
    context = {
        "project": project,
        "is_admin": _is_admin(request, project),
        "report": annotator_reliability_report(project=project),
        "threshold": MIN_OVERLAP_COMPARISONS,
    }
    return render(request, "curation/annotators.html", context)


@login_required
@require_POST
def reliability_refresh(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_get_for(user=request.user, slug=slug, roles=ADMIN)
    annotator_reliability_refresh_start(project=project)
    messages.info(
        request,
        "Estimating reliability on a worker; reload this page in a moment to see the result.",
    )
    return redirect("curation:annotators", slug=project.slug)
