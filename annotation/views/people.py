"""The people side of a project: the home page, members, and project settings."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotation.forms import GoldForm, MemberAddForm, MemberRoleForm, ProjectSettingsForm
from annotation.models import Membership, Project
from annotation.selectors import (
    membership_get,
    membership_list,
    project_get_for,
    project_progress_for,
)
from annotation.services.members import membership_add, membership_remove, membership_role_set
from annotation.services.projects import comparison_gold_set, project_update
from annotation.services.rendering import markdown_render
from core.exceptions import ApplicationError
from core.roles import ADMIN
from core.views import project_view


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return render(
        request, "annotation/home.html", {"rows": project_progress_for(user=request.user)}
    )


# ---------------------------------------------------------------- members


def _members_page(
    request: HttpRequest, project: Project, form: MemberAddForm, status: int = 200
) -> HttpResponse:
    context = {
        "project": project,
        "members": membership_list(project=project),
        "roles": Membership.Role.choices,
        "form": form,
    }
    return render(request, "annotation/members.html", context, status=status)


@project_view(roles=ADMIN)
@require_GET
def members(request: HttpRequest, project) -> HttpResponse:
    return _members_page(request, project, MemberAddForm())


@project_view(roles=ADMIN)
@require_POST
def member_add(request: HttpRequest, project) -> HttpResponse:
    form = MemberAddForm(request.POST)
    if form.is_valid():
        try:
            membership = membership_add(project=project, **form.cleaned_data)
        except ApplicationError as exc:
            form.add_error("identifier", exc.message)
        else:
            messages.success(
                request, f"Added {membership.user} as {membership.get_role_display()}."
            )
            return redirect("annotation:members", slug=project.slug)
    return _members_page(request, project, form, status=400)


@project_view(roles=ADMIN)
@require_POST
def member_role(request: HttpRequest, project, membership_id: int) -> HttpResponse:
    membership = membership_get(project=project, membership_id=membership_id)
    form = MemberRoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose one of the roles: admin, reviewer or annotator.")
        return _members_redirect(request, project)
    try:
        membership = membership_role_set(membership=membership, role=form.cleaned_data["role"])
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{membership.user} is now {membership.get_role_display()}.")
    return _members_redirect(request, project)


@project_view(roles=ADMIN)
@require_POST
def member_remove(request: HttpRequest, project, membership_id: int) -> HttpResponse:
    membership = membership_get(project=project, membership_id=membership_id)
    try:
        membership_remove(membership=membership)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Removed {membership.user} from {project.name}.")
    return _members_redirect(request, project)


def _members_redirect(request: HttpRequest, project: Project) -> HttpResponse:
    # An admin who just demoted or removed themselves may no longer see the members page.
    try:
        project_get_for(user=request.user, slug=project.slug, roles=ADMIN)
    except Http404:
        return redirect("annotation:home")
    return redirect("annotation:members", slug=project.slug)


# ---------------------------------------------------------------- settings


def _settings_form(project: Project, data=None) -> ProjectSettingsForm:
    return ProjectSettingsForm(
        data,
        initial={f: getattr(project, f) for f in ProjectSettingsForm.base_fields},
        preview_url=reverse("annotation:settings_preview", args=[project.slug]),
    )


def _settings_page(
    request: HttpRequest,
    project: Project,
    *,
    form: ProjectSettingsForm | None = None,
    gold_form: GoldForm | None = None,
    status: int = 200,
) -> HttpResponse:
    form = form or _settings_form(project)
    instructions = form["instructions"].value() or ""
    context = {
        "project": project,
        "form": form,
        "gold_form": gold_form or GoldForm(),
        "gold_count": project.comparisons.filter(is_gold=True).count(),
        "preview": markdown_render(text=instructions, images=True),
    }
    return render(request, "annotation/settings.html", context, status=status)


@project_view(roles=ADMIN)
@require_http_methods(["GET", "POST"])
def project_settings(request: HttpRequest, project) -> HttpResponse:
    if request.method == "GET":
        return _settings_page(request, project)
    form = _settings_form(project, request.POST)
    if form.is_valid():
        try:
            updated = project_update(project=project, **form.cleaned_data)
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            if updated.label_schema_version != project.label_schema_version:
                messages.warning(
                    request,
                    f"The label schema is now version {updated.label_schema_version}. "
                    f"Judgements made so far keep version {project.label_schema_version}, "
                    "so their labels are read as they were given.",
                )
            messages.success(request, "Settings saved.")
            return redirect("annotation:settings", slug=project.slug)
    return _settings_page(request, project, form=form, status=400)


@project_view(roles=ADMIN)
@require_POST
def settings_preview(request: HttpRequest, project) -> HttpResponse:
    preview = markdown_render(text=request.POST.get("instructions", ""), images=True)
    return render(
        request, "annotation/settings.html#preview", {"project": project, "preview": preview}
    )


@project_view(roles=ADMIN)
@require_POST
def gold_set(request: HttpRequest, project) -> HttpResponse:
    form = GoldForm(request.POST)
    if form.is_valid():
        try:
            count = comparison_gold_set(project=project, **form.cleaned_data)
        except ApplicationError as exc:
            form.add_error("ids", exc.message)
        else:
            label = form.cleaned_data["label"]
            done = f"marked gold ({label})" if label else "unmarked as gold"
            messages.success(request, f"{count} comparison(s) {done}.")
            return redirect("annotation:settings", slug=project.slug)
    return _settings_page(request, project, gold_form=form, status=400)
