"""The project's routing page: policy and budget, Re-route now with live progress, where the
comparisons went and how often the AI agrees with humans. Project admins only."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from core.exceptions import ApplicationError
from core.roles import ADMIN
from core.views import project_view, run_progress_response
from curation.routing.forms import RoutingSettingsForm
from curation.routing.selectors import routing_overview, routing_run_get, routing_settings_get
from curation.routing.services.project_settings import routing_settings_update
from curation.routing.services.runs import routing_run_start


def _budget_text(chosen) -> str:
    if chosen.human_budget is not None:
        return str(chosen.human_budget)
    if chosen.human_budget_fraction is not None:
        return f"{chosen.human_budget_fraction:g}"
    return ""


def _page(request: HttpRequest, project, *, form=None, status: int = 200) -> HttpResponse:
    chosen = routing_settings_get(project=project)
    form = form or RoutingSettingsForm(
        initial={"policy": chosen.policy, "budget": _budget_text(chosen)}
    )
    context = {"project": project, "form": form, **routing_overview(project=project)}
    template = "routing/routing.html"
    if request.htmx and request.htmx.target == "overview":
        template += "#overview"
    return render(request, template, context, status=status)


@project_view(roles=ADMIN)
def routing_page(request: HttpRequest, project) -> HttpResponse:
    return _page(request, project)


@project_view(roles=ADMIN)
@require_POST
def routing_settings(request: HttpRequest, project) -> HttpResponse:
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
    return _page(request, project, form=form, status=400)


@project_view(roles=ADMIN)
@require_POST
def routing_run(request: HttpRequest, project) -> HttpResponse:
    run = routing_run_start(project=project, created_by=request.user)
    if request.htmx:
        return render(request, "routing/routing.html#run", {"project": project, "run": run})
    messages.success(request, f"Routing run #{run.id} queued.")
    return redirect("routing:page", slug=project.slug)


@project_view(roles=ADMIN)
def routing_run_detail(request: HttpRequest, project, run_id: int) -> HttpResponse:
    """The progress partial of one run, polled by the page."""
    run = routing_run_get(project=project, run_id=run_id)
    context = {"project": project, "run": run}
    return run_progress_response(request, "routing/routing.html#run", context, run=run)
