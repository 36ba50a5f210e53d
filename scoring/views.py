"""The project's models page: training runs, their progress and evaluation metrics."""

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
from scoring.models import ModelVersion
from scoring.selectors import model_version_get, model_version_list
from scoring.services import model_version_cancel, model_version_train_start
from scoring.transformer import BACKBONES

ADMIN = (Membership.Role.ADMIN,)
REVIEWERS = (Membership.Role.ADMIN, Membership.Role.REVIEWER)
_FINISHED = (
    ModelVersion.Status.SUCCEEDED,
    ModelVersion.Status.FAILED,
    ModelVersion.Status.CANCELLED,
)


def _is_admin(request: HttpRequest, project) -> bool:
    # project_get_for annotates the caller's role.
    return request.user.is_superuser or project.member_role == Membership.Role.ADMIN


def _page(request: HttpRequest, project, *, error: str = "", status: int = 200) -> HttpResponse:
    context = {
        "project": project,
        "versions": model_version_list(project=project),
        "is_admin": _is_admin(request, project),
        "error": error,
        "backbones": BACKBONES,
    }
    return render(request, "scoring/models.html", context, status=status)


def _to_page(request: HttpRequest, project) -> HttpResponse:
    if request.htmx:
        return HttpResponseClientRedirect(reverse("scoring:models", args=[project.slug]))
    return redirect("scoring:models", slug=project.slug)


@login_required
def models(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_get_for(user=request.user, slug=slug, roles=REVIEWERS)
    return _page(request, project)


@login_required
def model_version_detail(request: HttpRequest, slug: str, version_id: int) -> HttpResponse:
    """The progress partial of one run (polled by the page); 286 stops polling once done."""
    project = project_get_for(user=request.user, slug=slug, roles=REVIEWERS)
    version = model_version_get(project=project, version_id=version_id)
    context = {"project": project, "version": version, "is_admin": _is_admin(request, project)}
    response = render(request, "scoring/models.html#run", context)
    if version.status in _FINISHED:
        response.status_code = HttpResponseStopPolling.status_code
    return response


@login_required
@require_POST
def model_train(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_get_for(user=request.user, slug=slug, roles=ADMIN)
    kind = request.POST.get("kind", ModelVersion.Kind.HEADS)
    config = {}
    if kind == ModelVersion.Kind.TRANSFORMER and request.POST.get("backbone"):
        config["backbone"] = request.POST["backbone"]
    try:
        version = model_version_train_start(project=project, kind=kind, config=config)
    except ApplicationError as exc:
        return _page(request, project, error=exc.message, status=400)
    messages.success(request, f"Training run #{version.id} queued.")
    return _to_page(request, project)


@login_required
@require_POST
def model_cancel(request: HttpRequest, slug: str, version_id: int) -> HttpResponse:
    project = project_get_for(user=request.user, slug=slug, roles=ADMIN)
    version = model_version_cancel(
        version=model_version_get(project=project, version_id=version_id)
    )
    messages.info(request, f"Run #{version.id} is {version.get_status_display().lower()}.")
    return _to_page(request, project)
