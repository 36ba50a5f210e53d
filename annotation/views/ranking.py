"""The labelling page in ranking mode: one prompt and its N candidates, ordered from the
keyboard (or by dragging) in rank.js and posted as one JSON order, the next ranking
prefetched.

/projects/<slug>/label/ serves this page when the project's schema says "mode": "ranking"
(labelling.label hands over to `rank_page`); answers go to their own URLs. As on the pair
page, rank.js swaps a prefetched ranking in as soon as an answer is given and posts the
answer behind it; without JavaScript the forms post and redirect back to the page.
"""

from __future__ import annotations

import uuid

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_POST

from annotation.forms import RankingForm, SkipForm
from annotation.models import Project, RankingAssignment
from annotation.selectors import project_media_kinds
from annotation.services.ranking import (
    ranking_assignment_candidates,
    ranking_assignment_get_for,
    ranking_assignment_next_for,
    ranking_played,
    ranking_progress,
    ranking_skip,
    ranking_submit,
)
from core.exceptions import ApplicationError
from core.roles import MEMBERS
from core.views import project_view

PAGE = "annotation/rank.html"


def _ranking(
    request: HttpRequest,
    project: Project,
    assignment: RankingAssignment | None,
    *,
    form: RankingForm | None = None,
    error: str = "",
    status: int = 200,
    fragment: bool = False,
) -> HttpResponse:
    """The page, or with htmx (or for a prefetch) only its #ranking fragment."""
    schema = project.label_schema
    lease_seconds = 0
    if assignment is not None:
        # rank.js shows a prefetched ranking only while its lease has time left.
        lease_seconds = max(0, int((assignment.leased_until - timezone.now()).total_seconds()))
    candidates = ranking_assignment_candidates(assignment=assignment) if assignment else []
    context = {
        "project": project,
        "assignment": assignment,
        "candidates": [(c, c.id in assignment.played) for c in candidates],
        "has_audio": any(c.kind == "audio" for c in candidates),
        "form": form or RankingForm(),
        "error": error,
        "progress": ranking_progress(annotator=request.user, project=project),
        "allow_ties": bool(schema.get("allow_ties")),
        "top_k": schema.get("top_k") or "",
        "lease_seconds": lease_seconds,
    }
    fragment = bool(request.htmx or fragment)
    # The shortcut sheet (outside the fragment) lists the media keys the project needs.
    context["media_kinds"] = set() if fragment else project_media_kinds(project=project)
    template = PAGE + "#ranking" if fragment else PAGE
    response = render(request, template, context, status=status)
    patch_vary_headers(response, ("HX-Request",))
    return response


def rank_page(request: HttpRequest, project: Project) -> HttpResponse:
    shown = None
    if "prefetch" in request.GET:
        # The ranking after the one on screen (?prefetch=<its key>), leased now so that it
        # can appear the moment an answer is given. Asking again returns the same lease.
        shown = ranking_assignment_get_for(
            annotator=request.user, project=project, key=request.GET["prefetch"]
        )
    assignment = ranking_assignment_next_for(annotator=request.user, project=project, exclude=shown)
    return _ranking(request, project, assignment, fragment=shown is not None)


def _next(request: HttpRequest, project: Project) -> HttpResponse:
    if not request.htmx:
        return redirect("annotation:label", slug=project.slug)
    assignment = ranking_assignment_next_for(annotator=request.user, project=project)
    return _ranking(request, project, assignment)


@project_view(roles=MEMBERS)
@require_POST
def rank_submit(request: HttpRequest, project, key: uuid.UUID) -> HttpResponse:
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
            if request.htmx and request.POST.get("next") == "progress":
                # The page shows its prefetched ranking already: only the counters change.
                progress = ranking_progress(annotator=request.user, project=project)
                return render(request, PAGE + "#progress", {"progress": progress})
            return _next(request, project)
    return _ranking(request, project, assignment, form=form, status=400)


@project_view(roles=MEMBERS)
@require_POST
def rank_played(request: HttpRequest, project, key: uuid.UUID) -> HttpResponse:
    """The page reports a clip played to its end (candidate=<id>)."""
    assignment = ranking_assignment_get_for(annotator=request.user, project=project, key=key)
    candidate = request.POST.get("candidate", "")
    if not (candidate.isascii() and candidate.isdigit()):
        return HttpResponseBadRequest("Say which response was played.")
    try:
        ranking_played(assignment=assignment, annotator=request.user, candidate_id=int(candidate))
    except ApplicationError as exc:
        return HttpResponseBadRequest(exc.message)
    return HttpResponse(status=204)


@project_view(roles=MEMBERS)
@require_POST
def rank_skip(request: HttpRequest, project, key: uuid.UUID) -> HttpResponse:
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
