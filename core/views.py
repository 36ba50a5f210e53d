"""What every app's views share: the project-view decorator and the run-progress response."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django_htmx.http import HttpResponseStopPolling, trigger_client_event

from core.models import Run

ProjectGetter = Callable[..., object]

# The event a run's progress answer raises once the run is finished: a page's results
# section listens with hx-trigger="run-finished from:body" and reloads itself, so that a
# finished run shows its results in place.
RUN_FINISHED_EVENT = "run-finished"
_project_get: ProjectGetter | None = None


def project_getter_set(getter: ProjectGetter) -> None:
    """The annotation app hands its `project_get_for` selector over at start-up (core sits
    below annotation and imports nothing from it)."""
    global _project_get
    _project_get = getter


def project_view(*, roles: Iterable[str] | None = None):
    """login_required, then the project of the URL's `slug` if the user is a member (with
    one of `roles`; None: any member), passed to the view in place of the slug. Everyone
    else gets a 404, so that outsiders cannot even learn that the project exists."""
    wanted = tuple(roles) if roles is not None else None

    def decorator(view):
        @login_required
        @functools.wraps(view)
        def wrapped(request: HttpRequest, slug: str, *args, **kwargs) -> HttpResponse:
            if _project_get is None:
                raise RuntimeError("no project getter: is the annotation app installed?")
            project = _project_get(user=request.user, slug=slug, roles=wanted)
            return view(request, project, *args, **kwargs)

        return wrapped

    return decorator


def run_cancel_message(name: str, run: Run) -> str:
    """What the Cancel button says happened: "Run #4 is cancelled.", or, for a run that had
    finished before the click, "Run #4 had already succeeded; nothing to cancel." """
    if run.status == Run.Status.CANCELLED:
        return f"{name} is cancelled."
    return f"{name} had already {run.get_status_display().lower()}; nothing to cancel."


def run_progress_response(
    request: HttpRequest, template: str, context: dict, *, run: Run
) -> HttpResponse:
    """The progress partial of one run, as its page polls it. Once the run is finished the
    answer is 286, which tells htmx to stop polling, and raises RUN_FINISHED_EVENT (after the
    swap settles, so the finished partial is in place first) for the page to refresh what
    the run changed. Polling stops there, so a page hears it once per run it watched."""
    response = render(request, template, context)
    if run.is_finished:
        response.status_code = HttpResponseStopPolling.status_code
        trigger_client_event(response, RUN_FINISHED_EVENT, {"run": run.pk}, after="settle")
    return response
