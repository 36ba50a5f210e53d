"""The project's models page: training runs, their progress and evaluation metrics, and the
project's training settings."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect

from core.exceptions import ApplicationError
from core.roles import ADMIN, REVIEWERS, Role
from core.views import project_view, run_cancel_message, run_progress_response
from scoring.forms import ScoringSettingsForm
from scoring.models import TrainingRun
from scoring.selectors import scoring_settings_get, training_run_get, training_run_list
from scoring.services.project_settings import scoring_settings_update
from scoring.services.training import training_run_cancel, training_run_start
from scoring.transformer import BACKBONES


def _is_admin(request: HttpRequest, project) -> bool:
    # project_get_for annotates the caller's role.
    return request.user.is_superuser or project.member_role == Role.ADMIN


def _page(
    request: HttpRequest, project, *, error: str = "", form=None, status: int = 200
) -> HttpResponse:
    current = scoring_settings_get(project=project)
    form = form or ScoringSettingsForm(
        initial={
            "auto_train_every": current.auto_train_every,
            "ensemble_members": current.ensemble_members,
            "find_noisy_after_training": current.find_noisy_after_training,
        }
    )
    context = {
        "project": project,
        "runs": training_run_list(project=project),
        "scoring_settings": current,
        "settings_form": form,
        "is_admin": _is_admin(request, project),
        "error": error,
        "backbones": BACKBONES,
    }
    template = "scoring/models.html"
    if request.htmx and request.htmx.target == "runs":
        template += "#runs"
    return render(request, template, context, status=status)


def _to_page(request: HttpRequest, project) -> HttpResponse:
    if request.htmx:
        return HttpResponseClientRedirect(reverse("scoring:models", args=[project.slug]))
    return redirect("scoring:models", slug=project.slug)


@project_view(roles=REVIEWERS)
def models(request: HttpRequest, project) -> HttpResponse:
    return _page(request, project)


@project_view(roles=REVIEWERS)
def training_run_detail(request: HttpRequest, project, run_id: int) -> HttpResponse:
    """The progress partial of one run, polled by the page."""
    run = training_run_get(project=project, run_id=run_id)
    context = {"project": project, "run": run, "is_admin": _is_admin(request, project)}
    return run_progress_response(request, "scoring/models.html#run", context, run=run)


@project_view(roles=ADMIN)
@require_POST
def model_train(request: HttpRequest, project) -> HttpResponse:
    kind = request.POST.get("kind", TrainingRun.Kind.HEADS)
    config = {}
    if kind == TrainingRun.Kind.TRANSFORMER and request.POST.get("backbone"):
        config["backbone"] = request.POST["backbone"]
    try:
        run = training_run_start(project=project, kind=kind, config=config, created_by=request.user)
    except ApplicationError as exc:
        return _page(request, project, error=exc.message, status=400)
    messages.success(request, f"Training run #{run.id} queued.")
    return _to_page(request, project)


@project_view(roles=ADMIN)
@require_POST
def training_run_cancel_view(request: HttpRequest, project, run_id: int) -> HttpResponse:
    run = training_run_cancel(run=training_run_get(project=project, run_id=run_id))
    messages.info(request, run_cancel_message(f"Run #{run.id}", run))
    return _to_page(request, project)


@project_view(roles=ADMIN)
@require_POST
def scoring_settings(request: HttpRequest, project) -> HttpResponse:
    form = ScoringSettingsForm(request.POST)
    if form.is_valid():
        try:
            scoring_settings_update(project=project, **form.cleaned_data)
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, "Training settings saved.")
            return _to_page(request, project)
    return _page(request, project, form=form, status=400)
