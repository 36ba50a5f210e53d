"""The labelling page in ranking mode: one prompt and its N candidates, ordered from the
keyboard (or by dragging) in rank.js and posted as one JSON order.

/projects/<slug>/label/ serves this page when the project's schema says "mode": "ranking"
(labelling.label hands over to `rank_page`); answers go to their own URLs. Without
JavaScript the forms post and redirect back to the page.
"""

from __future__ import annotations

import uuid

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_POST

from annotation.exceptions import ApplicationError
from annotation.forms import RankingForm, SkipForm
from annotation.models import Project, RankingAssignment
from annotation.selectors import project_get_for
from annotation.services.ranking import (
    ranking_assignment_candidates,
    ranking_assignment_get_for,
    ranking_assignment_next_for,
    ranking_progress,
    ranking_skip,
    ranking_submit,
)

PAGE = "annotation/rank.html"


def _ranking(
    request: HttpRequest,
    project: Project,
    assignment: RankingAssignment | None,
    *,
    form: RankingForm | None = None,
    error: str = "",
    status: int = 200,
) -> HttpResponse:
    """The page, or with htmx only its #ranking fragment."""
    schema = project.label_schema
    context = {
        "project": project,
        "assignment": assignment,
        "candidates": ranking_assignment_candidates(assignment=assignment) if assignment else [],
        "form": form or RankingForm(),
        "error": error,
        "progress": ranking_progress(annotator=request.user, project=project),
        "allow_ties": bool(schema.get("allow_ties")),
        "top_k": schema.get("top_k") or "",
    }
    template = PAGE + "#ranking" if request.htmx else PAGE
    response = render(request, template, context, status=status)
    patch_vary_headers(response, ("HX-Request",))
    return response


def rank_page(request: HttpRequest, project: Project) -> HttpResponse:
    assignment = ranking_assignment_next_for(annotator=request.user, project=project)
    return _ranking(request, project, assignment)


def _next(request: HttpRequest, project: Project) -> HttpResponse:
    if not request.htmx:
        return redirect("annotation:label", slug=project.slug)
    return rank_page(request, project)


@login_required
@require_POST
def rank_submit(request: HttpRequest, slug: str, key: uuid.UUID) -> HttpResponse:
    project = project_get_for(user=request.user, slug=slug)
    assignment = ranking_assignment_get_for(annotator=request.user, project=project, key=key)
    form = RankingForm(request.POST)
    if form.is_valid():
        try:
            ranking_submit(
                assignment=assignment,
                annotator=request.user,
                order=form.cleaned_data["order"],
                time_spent_ms=form.cleaned_data["time_spent_ms"],
            )
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            return _next(request, project)
    return _ranking(request, project, assignment, form=form, status=400)


@login_required
@require_POST
def rank_skip(request: HttpRequest, slug: str, key: uuid.UUID) -> HttpResponse:
    project = project_get_for(user=request.user, slug=slug)
    assignment = ranking_assignment_get_for(annotator=request.user, project=project, key=key)
    form = SkipForm(request.POST)
    if not form.is_valid():
        return _ranking(request, project, assignment, error=SkipForm.TOO_LONG, status=400)
    try:
        ranking_skip(
            assignment=assignment, annotator=request.user, reason=form.cleaned_data["reason"]
        )
    except ApplicationError as exc:
        return _ranking(request, project, assignment, error=exc.message, status=400)
    return _next(request, project)
