from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count

from annotation.models import (
    Choice,
    Comparison,
    Judgement,
    LabelSchemaVersion,
    Membership,
    Project,
)
from annotation.schema import label_schema_choices
from core.exceptions import ApplicationError

# What project_update may change; the slug is part of every URL and stays.
PROJECT_EDITABLE = frozenset(
    {
        "name",
        "instructions",
        "label_schema",
        "overlap",
        "gold_ratio",
        "require_full_play",
    }
)
# Judgements whose labels a schema change could reinterpret: imports carry the dataset's own
# labels and are not made under the project's schema.
SCHEMA_BOUND_SOURCES = (Judgement.SourceKind.HUMAN, Judgement.SourceKind.AI)
GOLD_IDS_MAX = 10_000


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


def _validation_message(exc: ValidationError) -> str:
    return "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())


_CHOICE_FLAG = {"tie": "allow_tie (allow_ties in ranking mode)", "both_bad": "allow_both_bad"}


def _schema_change_check(project: Project, schema: dict[str, Any]) -> bool:
    """True if the project has human or AI judgements (so the version must move on);
    ApplicationError if the new schema drops a choice that any of them, or a gold label,
    uses."""
    allowed = label_schema_choices(schema)
    judged = Judgement.objects.filter(
        comparison__project=project, source_kind__in=SCHEMA_BOUND_SOURCES
    )
    used = dict(judged.values_list("choice").annotate(n=Count("id")).order_by())
    dropped = sorted(set(used) - allowed)
    if dropped:
        names = ", ".join(f"'{c}' ({used[c]} judgement(s))" for c in dropped)
        flags = ", ".join(_CHOICE_FLAG.get(c, c) for c in dropped)
        raise ApplicationError(
            f"Existing judgements use {names}, which the new label schema no longer allows. "
            f"Keep it allowed ({flags}: true), or start a new project for the new choices."
        )
    gold = Comparison.objects.filter(project=project, is_gold=True)
    gold_used = dict(gold.values_list("gold_label").annotate(n=Count("id")).order_by())
    dropped = sorted(set(gold_used) - allowed)
    if dropped:
        names = ", ".join(f"'{c}' ({gold_used[c]} comparison(s))" for c in dropped)
        raise ApplicationError(
            f"Gold comparisons have the gold label {names}, which the new label schema no "
            "longer allows: give them another gold label or unmark them first."
        )
    return bool(used)


@transaction.atomic
def project_update(*, project: Project, **fields: Any) -> Project:
    """Set the given fields (see PROJECT_EDITABLE) and return the saved project.

    A new label schema on a project whose schema already has human or AI judgements bumps
    label_schema_version: each judgement keeps the version it was made under, so old labels
    are never read under the new schema. A schema that drops a choice those judgements use
    is refused.
    """
    unknown = set(fields) - PROJECT_EDITABLE
    if unknown:
        raise TypeError(f"project_update() cannot set {', '.join(sorted(unknown))}")
    # Locked: two admins saving at once must not both bump from the same version.
    project = Project.objects.select_for_update().get(pk=project.pk)
    schema = fields.get("label_schema")
    if schema is not None and schema != project.label_schema:
        if not isinstance(schema, dict):
            raise ApplicationError("label_schema: The label schema must be a JSON object.")
        if _schema_change_check(project, schema):
            # Keep the schema the old judgements were made under.
            LabelSchemaVersion.objects.create(
                project=project, version=project.label_schema_version, schema=project.label_schema
            )
            project.label_schema_version += 1
    for name, value in fields.items():
        setattr(project, name, value)
    try:
        project.full_clean()
    except ValidationError as exc:
        raise ApplicationError(_validation_message(exc)) from None
    project.save()
    return project


def _gold_targets(project: Project, ids: list[str], by: str) -> list[int]:
    """Comparison ids of `project` named by `ids`; ApplicationError naming every bad one."""
    if by == "id":
        # isascii: str.isdigit() also accepts digits such as "²" that int() refuses.
        bad = [i for i in ids if not (i.isascii() and i.isdigit() and 0 < int(i) < 2**63)]
        wanted = {int(i) for i in ids if i not in bad}
        found = set(
            Comparison.objects.filter(project=project, pk__in=wanted).values_list("pk", flat=True)
        )
        bad += [i for i in ids if i not in bad and int(i) not in found]
        targets = sorted(found)
    elif by == "external_id":
        rows = Comparison.objects.filter(project=project, external_id__in=set(ids))
        by_external: dict[str, list[int]] = {}
        for pk, external_id in rows.values_list("pk", "external_id"):
            by_external.setdefault(external_id, []).append(pk)
        bad = [i for i in ids if i not in by_external]
        shared = sorted(e for e, pks in by_external.items() if len(pks) > 1)
        if shared:
            # A ranked row gives every pair it expands into the same external id, and one
            # gold label cannot be right for all of them.
            raise ApplicationError(
                f"External id(s) {', '.join(shared)} name several comparisons (the pairs of a "
                "ranking): mark those by comparison id instead."
            )
        targets = sorted(pk for pks in by_external.values() for pk in pks)
    else:
        raise ApplicationError("Say whether the ids are comparison ids or external ids.")
    if bad:
        # Unknown and other projects' ids read the same: an admin of this project learns
        # nothing about other projects.
        raise ApplicationError(
            f"Not comparisons of this project: {', '.join(dict.fromkeys(bad))}. Nothing was "
            "changed."
        )
    return targets


@transaction.atomic
def comparison_gold_set(
    *, project: Project, ids: Iterable[str], label: str | None, by: str = "id"
) -> int:
    """Mark the comparisons named by `ids` as gold with `label` (a Choice value), or unmark
    them with label=None. `by` says what the ids are: "id" (comparison ids) or
    "external_id" (the ids from the imported file). All or nothing; returns how many."""
    ids = [str(i).strip() for i in ids if str(i).strip()]
    if not ids:
        raise ApplicationError("Give at least one comparison id.")
    if len(ids) > GOLD_IDS_MAX:
        raise ApplicationError(f"At most {GOLD_IDS_MAX} ids at a time, please.")
    if label is not None:
        if label not in Choice.values:
            raise ApplicationError(
                f"'{label}' is not a label: choose one of {', '.join(Choice.values)}."
            )
        if label not in label_schema_choices(project.label_schema):
            raise ApplicationError(
                f"The project's label schema does not allow '{label}', so it cannot be a gold "
                "label. Change the schema first."
            )
    targets = _gold_targets(project, ids, by)
    return Comparison.objects.filter(pk__in=targets).update(
        is_gold=label is not None, gold_label=label
    )
