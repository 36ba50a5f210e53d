"""Who works on a project, and in which role.

Every change locks the project row first, so that two admins acting at once cannot together
leave a project without an admin (each seeing the other still there).
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction

from annotation.models import Membership, Project
from core.exceptions import ApplicationError

ADMIN = Membership.Role.ADMIN


def _role_check(role: str) -> Membership.Role:
    if role not in Membership.Role.values:
        raise ApplicationError(
            f"'{role}' is not a role: choose one of {', '.join(Membership.Role.values)}."
        )
    return Membership.Role(role)


def _user_find(identifier: str) -> AbstractBaseUser:
    """A user by exact username, else by email (any case)."""
    user_model = get_user_model()
    user = user_model.objects.filter(**{user_model.USERNAME_FIELD: identifier}).first()
    if user is not None:
        return user
    by_email = list(user_model.objects.filter(email__iexact=identifier)[:2])
    if len(by_email) > 1:
        raise ApplicationError(
            f"Several accounts use the email '{identifier}': add the member by username."
        )
    if not by_email:
        raise ApplicationError(
            f"No account has the username or email '{identifier}'. Check the spelling, or "
            "ask a site administrator to create the account first."
        )
    return by_email[0]


def _project_lock(project: Project) -> None:
    Project.objects.select_for_update().filter(pk=project.pk).get()


def _membership_lock(membership: Membership) -> Membership:
    _project_lock(membership.project)
    locked = Membership.objects.filter(pk=membership.pk).select_related("user", "project").first()
    if locked is None:
        raise ApplicationError(f"{membership.user} is no longer a member of this project.")
    return locked


def _last_admin_refuse(membership: Membership, action: str) -> None:
    if membership.role != ADMIN:
        return
    if (
        not Membership.objects.filter(project_id=membership.project_id, role=ADMIN)
        .exclude(pk=membership.pk)
        .exists()
    ):
        raise ApplicationError(
            f"{membership.user} is the only admin of this project, so they cannot be "
            f"{action}: make another member an admin first."
        )


@transaction.atomic
def membership_add(*, project: Project, identifier: str, role: str) -> Membership:
    """Add the account named by `identifier` (username or email) to `project` as `role`."""
    identifier = identifier.strip()
    if not identifier:
        raise ApplicationError("Enter the username or email of the person to add.")
    role = _role_check(role)
    user = _user_find(identifier)
    _project_lock(project)
    existing = Membership.objects.filter(project=project, user=user).first()
    if existing is not None:
        raise ApplicationError(
            f"{user} is already a member of this project (as {existing.get_role_display()}); "
            "change their role in the list instead."
        )
    try:
        with transaction.atomic():
            return Membership.objects.create(project=project, user=user, role=role)
    except IntegrityError:  # pragma: no cover (the lock above makes this a backstop)
        raise ApplicationError(f"{user} is already a member of this project.") from None


@transaction.atomic
def membership_role_set(*, membership: Membership, role: str) -> Membership:
    role = _role_check(role)
    membership = _membership_lock(membership)
    if membership.role == role:
        return membership
    if role != ADMIN:
        _last_admin_refuse(membership, f"made {role.label.lower()}")
    membership.role = role
    membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership) -> None:
    membership = _membership_lock(membership)
    _last_admin_refuse(membership, "removed")
    # Their judgements stay (Judgement.user is PROTECT): labels already given keep counting.
    membership.delete()
