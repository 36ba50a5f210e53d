"""The project's routing page: policy and budget, Re-route now with live progress, where the
comparisons went and how often the AI agrees with humans. Project admins only."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseStopPolling

from annotation.exceptions import ApplicationError
from annotation.models import Membership
from annotation.selectors import project_get_for
from curation.routing.forms import RoutingSettingsForm
from curation.routing.selectors import routing_overview, routing_run_get
from curation.routing.services import routing_run_start, routing_settings_update

ADMIN = (Membership.Role.ADMIN,)


def _budget_text(project) -> str:
    if project.human_budget is not None:
        return str(project.human_budget)
    if project.human_budget_fraction is not None:
        return f"{project.human_budget_fraction:g}"
    return ""


def _page(request: HttpRequest, project, *, form=None, status: int = 200) -> HttpResponse:
    form = form or RoutingSettingsForm(
        initial={"policy": project.routing_policy, "budget": _budget_text(project)}
    )
    context = {"project": project, "form": form, **routing_overview(project=project)}
    return render(request, "routing/routing.html", context, status=status)


@login_required
def routing_page(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_get_for(user=request.user, slug=slug, roles=ADMIN)
    return _page(request, project)


@login_required
@require_POST
def routing_settings(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_get_for(user=request.user, slug=slug, roles=ADMIN)
    form = RoutingSettingsForm(request.POST)
    if form.is_valid():
        try:
            routing_settings_update(
                project=project,
                policy=form.cleaned_data["policy"],
                budget=form.cleaned_data["budget"],
            )
        except ApplicationError as exc:
            form.add_error("budget", exc.message)
        else:
            messages.success(request, "Routing settings saved; re-route to apply them.")
            return redirect("routing:page", slug=project.slug)
    project.refresh_from_db()
    return _page(request, project, form=form, status=400)


@login_required
@require_POST
def routing_run(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_get_for(user=request.user, slug=slug, roles=ADMIN)
    run = routing_run_start(project=project, created_by=request.user)
    if request.htmx:
        return render(request, "routing/routing.html#run", {"project": project, "run": run})
    messages.success(request, f"Routing run #{run.id} queued.")
    return redirect("routing:page", slug=project.slug)


@login_required
def routing_run_detail(request: HttpRequest, slug: str, run_id: int) -> HttpResponse:
    """The progress partial of one run (polled by the page); 286 stops polling once done."""
    project = project_get_for(user=request.user, slug=slug, roles=ADMIN)
    run = routing_run_get(project=project, run_id=run_id)
    response = render(request, "routing/routing.html#run", {"project": project, "run": run})
    if run.is_finished:
        response.status_code = HttpResponseStopPolling.status_code
    return response
