"""A reviewer's final say on a comparison's label."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from annotation.models import Choice, Comparison, LabelResolution
from annotation.schema import label_schema_choices
from core.exceptions import ApplicationError


def comparison_label_resolve(
    *, comparison: Comparison, reviewer: AbstractBaseUser, label: str, note: str
) -> LabelResolution:
    """Set the comparison's label to `label` for good (confidence 1, labelled) and record
    who did it, when, what the label was before, and why. Every call is recorded, a
    confirmation of the current label included. `comparison` is updated in place."""
    # What the project's schema allows, as for an annotator's choice (tie and both-bad only
    # where the project asks for them).
    allowed = label_schema_choices(comparison.project.label_schema)
    if label not in allowed:
        names = [c.label for c in Choice if c.value in allowed]
        raise ApplicationError(f"Pick one of {', '.join(names)}: this project's labels.")
    note = note.strip()
    if not note:
        raise ApplicationError("Say why: the note is what the next reviewer reads.")
    with transaction.atomic():
        # The row lock makes previous_label the label this resolution really replaced,
        # when two reviewers resolve the same comparison at once.
        previous = (
            Comparison.objects.select_for_update()
            .values_list("label", flat=True)
            .get(pk=comparison.pk)
        )
        resolution = LabelResolution.objects.create(
            comparison=comparison,
            reviewer=reviewer,
            previous_label=previous,
            label=label,
            note=note,
        )
        Comparison.objects.filter(pk=comparison.pk).update(
            label=label, label_confidence=1.0, status=Comparison.Status.LABELLED
        )
    comparison.label = label
    comparison.label_confidence = 1.0
    comparison.status = Comparison.Status.LABELLED
    return resolution
