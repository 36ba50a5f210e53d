from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from annotation.exceptions import ApplicationError
from annotation.models import Membership, Project


@transaction.atomic
def project_create(*, slug: str, name: str, instructions: str = "", admin=None) -> Project:
    if Project.objects.filter(slug=slug).exists():
        raise ApplicationError(f"A project with the slug '{slug}' exists already.")
    project = Project(slug=slug, name=name, instructions=instructions)
    try:
        project.full_clean()
    except ValidationError as exc:
        raise ApplicationError(
            "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
        ) from None
    project.save()
    if admin is not None:
        Membership.objects.create(project=project, user=admin, role=Membership.Role.ADMIN)
    return project
