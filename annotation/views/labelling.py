"""The labelling page: one pair at a time, driven from the keyboard, the next pair prefetched.

One URL serves the page and its #pair fragment. label.js swaps a prefetched pair in as soon
as an answer is given and posts the answer behind it; without JavaScript the forms post
and redirect back to the page.
"""

from __future__ import annotations

import uuid

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from annotation.forms import LabelForm, SkipForm
from annotation.models import Assignment, Project
from annotation.selectors import (
    annotator_progress,
    assignment_get_for,
    assignment_sides,
    project_media_kinds,
)
from annotation.services.queue import (
    assignment_current_for,
    assignment_next_for,
    assignment_played,
    assignment_skip,
    judgement_submit,
    judgement_undo_last,
    screen_sides,
)
from annotation.services.ranking import ranking_mode
from annotation.views.ranking import rank_page
from core.exceptions import ApplicationError
from core.roles import MEMBERS
from core.views import project_view

PAGE = "annotation/label.html"


def _pair(
    request: HttpRequest,
    project: Project,
    assignment: Assignment | None,
    *,
    form: LabelForm | None = None,
    error: str = "",
    status: int = 200,
    fragment: bool = False,
) -> HttpResponse:
    """The page, or with htmx (or for a prefetch) only its #pair fragment."""
    left = right = None
    lease_seconds = 0
    played: set[str] = set()
    if assignment is not None:
        left, right = assignment_sides(assignment=assignment)
        # label.js shows a prefetched pair only while its lease has time left.
        lease_seconds = max(0, int((assignment.leased_until - timezone.now()).total_seconds()))
        sides = screen_sides(assignment.presentation_order)
        played = {screen for screen, canonical in sides.items() if canonical in assignment.played}
    fragment = bool(request.htmx or fragment)
    context = {
        "project": project,
        "assignment": assignment,
        "left": left,
        "right": right,
        "played_left": "left" in played,
        "played_right": "right" in played,
        "has_audio": any(c is not None and c.kind == "audio" for c in (left, right)),
        # The shortcut sheet (outside the fragment) lists the media keys the project needs.
        "media_kinds": set() if fragment else project_media_kinds(project=project),
        "form": form or LabelForm(schema=project.label_schema),
        "error": error,
        "progress": annotator_progress(annotator=request.user, project=project),
        "lease_seconds": lease_seconds,
    }
    template = PAGE + "#pair" if fragment else PAGE
    response = render(request, template, context, status=status)
    patch_vary_headers(response, ("HX-Request",))
    return response


def _next_pair(request: HttpRequest, project: Project) -> HttpResponse:
    if not request.htmx:
        return redirect("annotation:label", slug=project.slug)
    return _pair(request, project, assignment_next_for(annotator=request.user, project=project))


@never_cache
@project_view(roles=MEMBERS)
@require_GET
def label(request: HttpRequest, project) -> HttpResponse:
    if ranking_mode(project):
        return rank_page(request, project)
    shown = None
    if "prefetch" in request.GET:
        # The pair after the one on screen (?prefetch=<its key>), leased now so that it can
        # appear the moment an answer is given. Asking again returns the same lease.
        shown = assignment_get_for(
            annotator=request.user, project=project, key=request.GET["prefetch"]
        )
    assignment = assignment_next_for(annotator=request.user, project=project, exclude=shown)
    return _pair(request, project, assignment, fragment=shown is not None)


@project_view(roles=MEMBERS)
@require_POST
def label_submit(request: HttpRequest, project, key: uuid.UUID) -> HttpResponse:
    assignment = assignment_get_for(annotator=request.user, project=project, key=key)
    form = LabelForm(request.POST, schema=project.label_schema)
    if form.is_valid():
        try:
            judgement_submit(assignment=assignment, annotator=request.user, answer=form.answer())
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            if request.htmx and request.POST.get("next") == "progress":
                # The page shows its prefetched pair already: only the counters change.
                progress = annotator_progress(annotator=request.user, project=project)
                return render(request, PAGE + "#progress", {"progress": progress})
            return _next_pair(request, project)
    return _pair(request, project, assignment, form=form, status=400)


@project_view(roles=MEMBERS)
@require_POST
def label_played(request: HttpRequest, project, key: uuid.UUID) -> HttpResponse:
    """The page reports a clip played to its end (side=left|right, as shown)."""
    assignment = assignment_get_for(annotator=request.user, project=project, key=key)
    try:
        assignment_played(
            assignment=assignment, annotator=request.user, side=request.POST.get("side", "")
        )
    except ApplicationError as exc:
        return HttpResponseBadRequest(exc.message)
    return HttpResponse(status=204)


@project_view(roles=MEMBERS)
@require_POST
def label_skip(request: HttpRequest, project, key: uuid.UUID) -> HttpResponse:
    assignment = assignment_get_for(annotator=request.user, project=project, key=key)
    form = SkipForm(request.POST)
    if not form.is_valid():
        return _pair(request, project, assignment, error=SkipForm.TOO_LONG, status=400)
    try:
        assignment_skip(
            assignment=assignment, annotator=request.user, reason=form.cleaned_data["reason"]
        )
    except ApplicationError as exc:
        return _pair(request, project, assignment, error=exc.message, status=400)
    return _next_pair(request, project)


@project_view(roles=MEMBERS)
@require_POST
def label_undo(request: HttpRequest, project) -> HttpResponse:
    try:
        assignment = judgement_undo_last(annotator=request.user, project=project)
    except ApplicationError as exc:
        current = assignment_current_for(annotator=request.user, project=project)
        return _pair(request, project, current, error=exc.message, status=400)
    if not request.htmx:
        # The page shows the oldest open lease first, which is the item just reopened.
        return redirect("annotation:label", slug=project.slug)
    return _pair(request, project, assignment)
