"""Curation actions on flagged pairs: drop, flip, send back to humans, keep; each one
audited and reversible (undo).

How a flip is recorded: as a LabelResolution (annotation's "final label, with why") by the
person who flipped, or for a policy by the admin who set the policy, with a note naming the
curation action. annotation/services/labels.py already leaves a resolved comparison's label
alone when judgements are aggregated again, so a flip survives new judgements and
re-weighting without annotation knowing anything about curation. Undoing the flip deletes
exactly that resolution row (its id is in the action's `after`) and restores the label,
confidence and status the comparison had; the CurationAction rows keep the history.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Exists, Max, OuterRef

from annotation.models import Choice, Comparison, LabelResolution, Project
from annotation.signals import labels_changed
from core.exceptions import ApplicationError
from curation.models import Action, CurationAction, CurationPolicy, NoiseFlag

# Fields of a comparison an action may change; `before`/`after` hold exactly these.
STATE_FIELDS = (
    "label",
    "label_confidence",
    "label_margin",
    "excluded",
    "status",
    "priority",
    "route",
)


def _state(comparison: Comparison) -> dict:
    return {field: getattr(comparison, field) for field in STATE_FIELDS}


def _refuse_reason(comparison: Comparison, action: str) -> str | None:
    """Why `action` cannot apply to `comparison` (None: it can)."""
    if action == Action.FLIP and comparison.label not in (Choice.A, Choice.B):
        return "only an A or B label can be flipped"
    if action == Action.REQUEUE:
        if comparison.is_gold:
            return "a gold pair's label is set on the gold page, not by annotators"
        if comparison.has_resolution:
            return "a reviewer set its final label; change it on the review page"
    if action == Action.DROP and comparison.excluded:
        return "it is dropped already"
    return None


def _act(
    comparison: Comparison,
    action: str,
    *,
    actor: AbstractBaseUser | None,
    policy: CurationPolicy | None,
    batch: uuid.UUID,
    requeue_priority: int,
) -> CurationAction:
    """Apply `action` to a row locked by the caller; write its audit row."""
    before = _state(comparison)
    extra_after: dict = {}
    open_flags = NoiseFlag.objects.filter(comparison=comparison, state=NoiseFlag.State.OPEN)
    if action == Action.DROP:
        comparison.excluded = True
    elif action == Action.FLIP:
        new = Choice.B if comparison.label == Choice.A else Choice.A
        top = open_flags.aggregate(top=Max("score"))["top"]
        why = f"{top:.2f} likely mislabelled" if top is not None else "by hand"
        resolution = LabelResolution.objects.create(
            comparison=comparison,
            reviewer=actor or policy.updated_by,
            previous_label=comparison.label,
            label=new,
            note=f"Curation: flipped {comparison.label.upper()} → {new.upper()} "
            f"({policy.name if policy else 'by hand'}; {why}).",
        )
        extra_after["resolution"] = resolution.pk
        comparison.label = new
        # The flipped label is as sure as the detectors were that the old one was wrong.
        comparison.label_confidence = top
        comparison.status = Comparison.Status.LABELLED
    elif action == Action.REQUEUE:
        comparison.status = Comparison.Status.PENDING
        comparison.label = comparison.label_confidence = comparison.label_margin = None
        comparison.priority = max(comparison.priority, requeue_priority)
        comparison.excluded = False
        if comparison.route == Comparison.Route.AI:
            comparison.route = Comparison.Route.HUMAN
    Comparison.objects.filter(pk=comparison.pk).update(**_state(comparison))
    flag_ids = list(open_flags.values_list("id", flat=True))
    record = CurationAction.objects.create(
        comparison=comparison,
        action=action,
        actor=actor,
        policy_name=policy.name if policy else "",
        before={**before, "flags": []},
        after={**_state(comparison), **extra_after, "flags": flag_ids},
        batch=batch,
    )
    NoiseFlag.objects.filter(pk__in=flag_ids).update(state=NoiseFlag.State.REVIEWED, action=record)
    return record


def _labels_changed(project_id: int) -> None:
    """Tell the scoring app (automatic training) once the transaction commits: a flip, a
    re-queue or a drop changes the labels it trains on."""
    transaction.on_commit(lambda: labels_changed.send(sender=Comparison, project_ids={project_id}))


def _locked(project: Project, comparison_ids: Iterable[int]) -> list[Comparison]:
    """The project's comparisons `comparison_ids`, row-locked in id order (no deadlocks
    between two bulk actions), each with `has_resolution`."""
    return list(
        Comparison.objects.select_for_update(of=("self",))
        .filter(project=project, pk__in=list(comparison_ids))
        .annotate(has_resolution=Exists(LabelResolution.objects.filter(comparison=OuterRef("pk"))))
        .order_by("pk")
    )


def _requeue_priority(project: Project) -> int:
    """Above everything the routing put in the queue: re-queued pairs come first."""
    top = Comparison.objects.filter(project=project).aggregate(top=Max("priority"))["top"]
    return max(top or 0, 0) + 1


def curation_action_apply(
    *,
    project: Project,
    comparison_ids: Iterable[int],
    action: str,
    actor: AbstractBaseUser,
) -> list[CurationAction]:
    """Apply `action` (drop, flip, requeue, keep) to each of the project's comparisons
    `comparison_ids`, all in one transaction: if any of them cannot take it, nothing
    changes and the error names them. Returns the audit rows."""
    if action not in (Action.DROP, Action.FLIP, Action.REQUEUE, Action.KEEP):
        raise ApplicationError(f"Unknown action '{action}': use drop, flip, requeue or keep.")
    wanted = {int(i) for i in comparison_ids}
    if not wanted:
        raise ApplicationError("Select at least one pair.")
    batch = uuid.uuid4()
    with transaction.atomic():
        rows = _locked(project, wanted)
        missing = wanted - {c.pk for c in rows}
        if missing:
            raise ApplicationError(
                f"No such pair in this project: #{', #'.join(map(str, sorted(missing)))}."
            )
        refused = [(c.pk, why) for c in rows if (why := _refuse_reason(c, action))]
        if refused:
            listed = "; ".join(f"#{cid}: {why}" for cid, why in refused)
            raise ApplicationError(f"Nothing was changed. Cannot {action} {listed}.")
        priority = _requeue_priority(project)
        done = [
            _act(c, action, actor=actor, policy=None, batch=batch, requeue_priority=priority)
            for c in rows
        ]
        if action != Action.KEEP:
            _labels_changed(project.pk)
    return done


def curation_action_undo(*, action: CurationAction, actor: AbstractBaseUser) -> CurationAction:
    """Put the comparison back exactly as it was before `action`: its curated fields, the
    LabelResolution a flip wrote (deleted), and its flags (open again). Refused when the
    pair changed since (a later action, new judgements): undo those first."""
    with transaction.atomic():
        action = CurationAction.objects.select_for_update().get(pk=action.pk)
        if action.action == Action.UNDO:
            raise ApplicationError("An undo cannot be undone; apply the action again instead.")
        if action.undone_by_id is not None:
            raise ApplicationError(f"Action #{action.pk} was undone already.")
        comparison = Comparison.objects.select_for_update().get(pk=action.comparison_id)
        current = _state(comparison)
        expected = {field: action.after.get(field) for field in STATE_FIELDS}
        if current != expected:
            changed = ", ".join(f for f in STATE_FIELDS if current[f] != expected[f])
            raise ApplicationError(
                f"Pair #{comparison.pk} changed since action #{action.pk} ({changed}); "
                "undo the later change first."
            )
        resolution_id = action.after.get("resolution")
        if resolution_id is not None:
            later = LabelResolution.objects.filter(
                comparison=comparison, pk__gt=resolution_id
            ).exists()
            if later:
                raise ApplicationError(
                    f"A reviewer set pair #{comparison.pk}'s label after this flip; "
                    "undo is refused so that their decision stands."
                )
            LabelResolution.objects.filter(pk=resolution_id).delete()
        restored = {field: action.before[field] for field in STATE_FIELDS}
        Comparison.objects.filter(pk=comparison.pk).update(**restored)
        if action.action != Action.KEEP:
            _labels_changed(comparison.project_id)
        undo = CurationAction.objects.create(
            comparison=comparison,
            action=Action.UNDO,
            actor=actor,
            before={**current, "flags": action.after.get("flags", [])},
            after={**restored, "flags": []},
        )
        NoiseFlag.objects.filter(action=action).update(state=NoiseFlag.State.OPEN, action=None)
        action.undone_by = undo
        action.save(update_fields=["undone_by"])
    return undo
