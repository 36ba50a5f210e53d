from __future__ import annotations

from django.db.models import Count, Q, QuerySet
from django.http import Http404

from annotation.models import Comparison, ImportJob, Membership, Project


def project_list_for(*, user) -> QuerySet[Project]:
    qs = Project.objects.order_by("name")
    return qs if user.is_superuser else qs.filter(memberships__user=user)


def project_get_for(*, user, slug: str, roles: tuple[str, ...] | None = None) -> Project:
    """The project if `user` may see it (with one of `roles`); Http404 otherwise, so that
    outsiders cannot even learn that the project exists."""
    project = Project.objects.filter(slug=slug).first()
    if project is None:
        raise Http404("No such project.")
    if user.is_superuser:
        return project
    membership = Membership.objects.filter(project=project, user=user).first()
    if membership is None or (roles and membership.role not in roles):
        raise Http404("No such project.")
    return project


def project_stats(*, project: Project) -> dict[str, int]:
    stats = Comparison.objects.filter(project=project).aggregate(
        comparisons=Count("id"),
        labelled=Count("id", filter=Q(status=Comparison.Status.LABELLED)),
        pending=Count("id", filter=Q(status=Comparison.Status.PENDING)),
    )
    stats["prompts"] = project.prompts.count()
    return stats


def import_job_list(*, project: Project, limit: int = 10) -> QuerySet[ImportJob]:
    return project.import_jobs.order_by("-created_at")[:limit]


def import_job_get(*, project: Project, job_id: int) -> ImportJob:
    job = ImportJob.objects.filter(project=project, pk=job_id).first()
    if job is None:
        raise Http404("No such import.")
    return job
