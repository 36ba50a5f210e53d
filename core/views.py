"""What every app's views share: the project-view decorator and the run-progress response;
and the site dashboard (staff)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET
from django_htmx.http import HttpResponseStopPolling, trigger_client_event

from core import selectors
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


def staff_view(view):
    """login_required, then staff only: everyone else gets a 404, as for a project they are
    not a member of."""

    @login_required
    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_staff:
            raise Http404("No such page.")
        return view(request, *args, **kwargs)

    return wrapped


SITE = "core/site.html"
SITE_DAY = timedelta(days=1)


def _site_workers() -> dict:
    workers = selectors.worker_list()
    return {
        "workers": workers,
        "queues": selectors.queue_list(workers=workers),
        "heartbeat_s": settings.WORKER_HEARTBEAT_S,
        "gone_after_s": settings.WORKER_GONE_AFTER_S,
    }


def _site_projects() -> dict:
    since = selectors.db_now() - SITE_DAY
    return {"projects": selectors.site_projects(since=since), "db_size": selectors.database_size()}


def _site_failures() -> dict:
    since = selectors.db_now() - SITE_DAY
    return {"failures": selectors.runs_failed_since(since=since)}


# Each live fragment of the page (a partial of SITE) and what it shows.
SITE_PARTS: dict[str, Callable[[], dict]] = {
    "workers": _site_workers,
    "projects": _site_projects,
    "failures": _site_failures,
}


@staff_view
@require_GET
def site(request: HttpRequest) -> HttpResponse:
    """The site dashboard: workers and queues, projects, failed runs, database size. Its
    fragments poll this URL with ?part=<name> and get only that partial."""
    part = request.GET.get("part", "")
    if request.htmx and part in SITE_PARTS:
        context = SITE_PARTS[part]()
        return render(request, f"{SITE}#{part}", {**context, "as_of": selectors.db_now()})
    context = {"as_of": selectors.db_now()}
    for build in SITE_PARTS.values():
        context.update(build())
    return render(request, SITE, context)
