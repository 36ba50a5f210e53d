from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.core.cache import cache
from django.db.models import (
    Count,
    Exists,
    F,
    Max,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
)
from django.http import Http404
from django.utils import timezone

from annotation.media import CONTENT_TYPES, blob_name
from annotation.models import (
    Assignment,
    Candidate,
    Comparison,
    ImportJob,
    Judgement,
    LabelResolution,
    Membership,
    Project,
    Prompt,
)


def project_list_for(*, user) -> QuerySet[Project]:
    qs = Project.objects.order_by("name")
    return qs if user.is_superuser else qs.filter(memberships__user=user)


def project_get_for(*, user, slug: str, roles: tuple[str, ...] | None = None) -> Project:
    """The project if `user` may see it (with one of `roles`); Http404 otherwise, so that
    outsiders cannot even learn that the project exists."""
    # One query: every page and htmx request starts here.
    role = Membership.objects.filter(project=OuterRef("pk"), user_id=user.pk).values("role")[:1]
    project = Project.objects.filter(slug=slug).annotate(member_role=Subquery(role)).first()
    if project is None:
        raise Http404("No such project.")
    if user.is_superuser:
        return project
    if project.member_role is None or (roles and project.member_role not in roles):
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


def membership_list(*, project: Project) -> QuerySet[Membership]:
    return project.memberships.select_related("user").order_by("user__username")


def membership_get(*, project: Project, membership_id: int) -> Membership:
    membership = membership_list(project=project).filter(pk=membership_id).first()
    if membership is None:
        raise Http404("No such member.")
    return membership


@dataclass(frozen=True)
class ProjectProgress:
    """A row of the home page: a project, the user's role in it and their own work there."""

    project: Project
    role: str  # a Membership.Role value, or "" for a superuser who is not a member
    judgements_total: int
    judgements_today: int
    is_admin: bool


def project_progress_for(*, user) -> list[ProjectProgress]:
    """The user's projects (all of them for a superuser) with the judgements they made in
    each: in total and today (in the site's time zone)."""
    roles = dict(Membership.objects.filter(user=user).values_list("project_id", "role"))
    counts = {
        row["comparison__project_id"]: row
        for row in Judgement.objects.filter(user=user)
        .values("comparison__project_id")
        .annotate(
            total=Count("id"),
            today=Count("id", filter=Q(created_at__date=timezone.localdate())),
        )
        .order_by()
    }
    rows = []
    for project in project_list_for(user=user).distinct():
        count = counts.get(project.id, {})
        rows.append(
            ProjectProgress(
                project=project,
                role=roles.get(project.id, ""),
                judgements_total=count.get("total", 0),
                judgements_today=count.get("today", 0),
                is_admin=user.is_superuser or roles.get(project.id) == Membership.Role.ADMIN,
            )
        )
    return rows


@dataclass
class ProjectSiteRow:
    """A row of the site dashboard (staff): a project's comparisons by status (excluded
    ones counted apart, whatever their status), its judgements since the dashboard's
    `since`, and (set by core.selectors.site_projects) its queued or running runs."""

    project: Project
    pending: int = 0
    labelled: int = 0
    disputed: int = 0
    excluded: int = 0
    judgements_recent: int = 0
    last_judgement_at: datetime | None = None
    runs_active: int = 0

    @property
    def total(self) -> int:
        return self.pending + self.labelled + self.disputed + self.excluded

    @property
    def percent_labelled(self) -> int:
        """Labelled share of the comparisons that count (not excluded), 0-100."""
        counted = self.pending + self.labelled + self.disputed
        return int(100 * self.labelled / counted) if counted else 0


def project_site_summary(*, since: datetime) -> list[ProjectSiteRow]:
    """Every project, by name, with its comparisons by status and its judgements since
    `since`. Two grouped queries over all comparisons and the recent judgements: fine for
    a few projects of modest size; the dashboard of issue 13 wants summary rows instead at a
    million comparisons."""
    rows = {p.pk: ProjectSiteRow(project=p) for p in Project.objects.order_by("name")}
    counted = Q(excluded=False)
    by_status = (
        Comparison.objects.values("project_id")
        .annotate(
            pending=Count("id", filter=counted & Q(status=Comparison.Status.PENDING)),
            labelled=Count("id", filter=counted & Q(status=Comparison.Status.LABELLED)),
            disputed=Count("id", filter=counted & Q(status=Comparison.Status.DISPUTED)),
            excluded=Count("id", filter=Q(excluded=True)),
        )
        .order_by()
    )
    for count in by_status:
        row = rows.get(count["project_id"])
        if row is not None:
            for name in ("pending", "labelled", "disputed", "excluded"):
                setattr(row, name, count[name])
    recent = (
        Judgement.objects.filter(created_at__gte=since)
        .values("comparison__project_id")
        .annotate(n=Count("id"), last=Max("created_at"))
        .order_by()
    )
    for count in recent:
        row = rows.get(count["comparison__project_id"])
        if row is not None:
            row.judgements_recent = count["n"]
            row.last_judgement_at = count["last"]
    return list(rows.values())


def project_role_for(*, user, project: Project) -> str | None:
    """The user's Membership.Role in `project`: admin for a superuser, None for others."""
    if user.is_superuser:
        return Membership.Role.ADMIN
    return (
        Membership.objects.filter(project=project, user=user).values_list("role", flat=True).first()
    )


def _comparisons_for_review(project: Project) -> QuerySet[Comparison]:
    return (
        Comparison.objects.filter(project=project)
        .select_related("prompt", "candidate_a", "candidate_b")
        .prefetch_related(
            Prefetch(
                "judgements",
                queryset=Judgement.objects.select_related("user").order_by("created_at", "id"),
            ),
            Prefetch(
                "resolutions",
                queryset=LabelResolution.objects.select_related("reviewer").order_by(
                    "-created_at", "-id"
                ),
            ),
        )
    )


def comparison_disagreement_list(*, project: Project) -> QuerySet[Comparison]:
    """What a reviewer should look at: comparisons whose human judgements split (two or
    more that do not all make the same choice) and gold misses (a human judgement on a
    gold comparison that differs from its gold label). Newest first, by the time of the
    last human judgement: that is when the disagreement appeared. Resolved ones stay
    listed with their history, since the judgements still disagree."""
    human = Q(judgements__source_kind=Judgement.SourceKind.HUMAN)
    return (
        _comparisons_for_review(project)
        .annotate(
            human_choices=Count("judgements__choice", filter=human, distinct=True),
            gold_misses=Count(
                "judgements",
                filter=human & Q(is_gold=True) & ~Q(judgements__choice=F("gold_label")),
            ),
            last_judged_at=Max("judgements__created_at", filter=human),
        )
        .filter(Q(human_choices__gte=2) | Q(gold_misses__gt=0))
        .order_by("-last_judged_at", "-id")
    )


def comparison_get_for_review(*, project: Project, comparison_id: int) -> Comparison:
    comparison = _comparisons_for_review(project).filter(pk=comparison_id).first()
    if comparison is None:
        raise Http404("No such comparison.")
    return comparison


# ---------------------------------------------------------------- labelling


def assignment_get_for(*, annotator, project: Project, key: uuid.UUID | str) -> Assignment:
    """One of `annotator`'s own assignments in `project`. Anyone else's key is a 404, so that
    a key can neither show nor answer another person's item."""
    try:
        key = uuid.UUID(str(key))
    except ValueError:
        raise Http404("No such item.") from None
    assignment = (
        Assignment.objects.filter(key=key, annotator=annotator, comparison__project=project)
        .select_related("comparison")
        .first()
    )
    if assignment is None:
        raise Http404("No such item.")
    return assignment


def assignment_sides(*, assignment: Assignment) -> tuple[Candidate, Candidate]:
    """The candidates as the annotator sees them: (left, right). One query for the pair."""
    comparison = Comparison.objects.select_related("prompt", "candidate_a", "candidate_b").get(
        pk=assignment.comparison_id
    )
    assignment.comparison = comparison
    if assignment.presentation_order == Assignment.Order.AB:
        return comparison.candidate_a, comparison.candidate_b
    return comparison.candidate_b, comparison.candidate_a


def annotator_progress(*, annotator, project: Project) -> dict[str, int]:
    """The labelling page's counters: the annotator's judgements in `project` today (since
    local midnight) and in all, and the open human items they have not been given yet.
    Counts over indexed columns only: it runs on every pair shown."""
    midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    done = Judgement.objects.filter(
        user=annotator, comparison__project=project, source_kind=Judgement.SourceKind.HUMAN
    ).aggregate(done_total=Count("id"), done_today=Count("id", filter=Q(created_at__gte=midnight)))
    return {**done, "remaining": queue_remaining(project=project)}


def queue_remaining(*, project: Project) -> int:
    """Open human items of the project (pending, not gold). Counting a large project's
    queue on every pair shown would cost more than serving the pair, so the figure is
    cached for a few seconds per project."""
    key = f"queue-remaining:{project.pk}"
    remaining = cache.get(key)
    if remaining is None:
        remaining = Comparison.objects.filter(
            project=project,
            status=Comparison.Status.PENDING,
            route__in=[Comparison.Route.HUMAN, Comparison.Route.BOTH],
            is_gold=False,
        ).count()
        cache.set(key, remaining, timeout=10)
    return remaining


_MEDIA_NAME = re.compile(r"(?P<hash>[0-9a-f]{64})(?P<ext>\.[a-z0-9]{2,5})")


@dataclass(frozen=True, slots=True)
class MediaFile:
    name: str  # the storage name (annotation.media.blob_name)
    content_type: str
    hash: str  # sha256 of the bytes: the file never changes, so it is the ETag too
    filename: str  # what the browser is told: "<hash><ext>", nothing about the source


def media_file_for(*, project: Project, name: str) -> MediaFile:
    """The stored file `name` ("<sha256><ext>") if `project` uses it: as a candidate of one
    of its prompts or as a prompt's own media. Http404 otherwise, the same for a bad name,
    an unknown hash and a file that only other projects use, so that nobody learns which
    files exist. One query, on the partial indexes over Candidate.file and
    Prompt(media, project). The content type comes from the extension, which the importer
    derived from the sniffed bytes."""
    match = _MEDIA_NAME.fullmatch(name)
    if match is None or match["ext"] not in CONTENT_TYPES:
        raise Http404("No such file.")
    stored = blob_name(match["hash"], match["ext"])
    # `exclude(file="")` repeats the indexes' condition so the planner takes them as is.
    candidate = Candidate.objects.filter(file=stored, prompt__project=project).exclude(file="")
    prompt = Prompt.objects.filter(media=stored, project=project).exclude(media="")
    used = Project.objects.filter(pk=project.pk).filter(Exists(candidate) | Exists(prompt))
    if not used.exists():
        raise Http404("No such file.")
    return MediaFile(
        name=stored,
        content_type=CONTENT_TYPES[match["ext"]],
        hash=match["hash"],
        filename=name,
    )


def project_media_kinds(*, project: Project) -> set[str]:
    """The media kinds ("image", "audio") among the project's candidates: the labelling
    page's shortcut sheet lists the keys for those."""
    # file != "" is the condition of candidate_file_idx: only media candidates are read.
    return set(
        Candidate.objects.exclude(file="")
        .filter(prompt__project=project)
        .values_list("kind", flat=True)
        .distinct()
    )
