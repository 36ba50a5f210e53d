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
