"""The reviewer's page: disagreements and gold misses, and setting the final label."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from annotation.forms import LabelResolveForm
from annotation.selectors import (
    comparison_disagreement_list,
    comparison_get_for_review,
)
from annotation.services.review import comparison_label_resolve
from core.exceptions import ApplicationError
from core.roles import REVIEWERS
from core.views import project_view

PAGE_SIZE = 50


@project_view(roles=REVIEWERS)
def review(request: HttpRequest, project) -> HttpResponse:
    page = Paginator(comparison_disagreement_list(project=project), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    items = [(c, LabelResolveForm(comparison=c, project=project)) for c in page]
    return render(
        request, "annotation/review.html", {"project": project, "page": page, "items": items}
    )


@project_view(roles=REVIEWERS)
@require_POST
def review_resolve(request: HttpRequest, project, comparison_id: int) -> HttpResponse:
    comparison = comparison_get_for_review(project=project, comparison_id=comparison_id)
    form = LabelResolveForm(request.POST, comparison=comparison, project=project)
    if form.is_valid():
        try:
            comparison_label_resolve(
                comparison=comparison, reviewer=request.user, **form.cleaned_data
            )
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            if not request.htmx:
                page = request.GET.get("page", "")
                url = reverse("annotation:review", args=[project.slug])
                query = f"?page={page}" if page.isdigit() else ""
                return redirect(f"{url}{query}#comparison-{comparison.pk}")
            # Re-read: the block shows the new entry of the history.
            comparison = comparison_get_for_review(project=project, comparison_id=comparison.pk)
            form = LabelResolveForm(comparison=comparison, project=project)
    # Without JavaScript a refused form comes back as a page of this one comparison.
    template = "annotation/review.html#comparison" if request.htmx else "annotation/review.html"
    context = {
        "project": project,
        "comparison": comparison,
        "form": form,
        "items": [(comparison, form)],
    }
    return render(request, template, context, status=400 if form.errors else 200)
