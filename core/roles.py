"""Roles in a project, and the sets of them that views ask for."""

from __future__ import annotations

from django.db import models


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    REVIEWER = "reviewer", "Reviewer"
    ANNOTATOR = "annotator", "Annotator"


ADMIN = (Role.ADMIN,)
REVIEWERS = (Role.ADMIN, Role.REVIEWER)
# Any member of the project.
MEMBERS = None


def member_role(*, user, project) -> str | None:
    """The user's role in `project` (admin for a superuser; None for a non-member).
    `project_get_for` has already annotated it as `member_role` on the project every
    project view gets, so this costs a query only for a project that came another way."""
    if user.is_superuser:
        return Role.ADMIN
    if hasattr(project, "member_role"):
        return project.member_role
    return project.memberships.filter(user_id=user.pk).values_list("role", flat=True).first()
