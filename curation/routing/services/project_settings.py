"""A project's routing policy and human budget."""

from __future__ import annotations

from annotation.models import Project
from core.exceptions import ApplicationError
from curation.routing import policies
from curation.routing.models import RoutingSettings


def _budget_parse(value: str) -> tuple[int | None, float | None]:
    """'' -> no limit; '120' -> a count; '0.3' or '30%' -> a fraction."""
    text = (value or "").strip()
    if not text:
        return None, None
    try:
        if text.endswith("%"):
            fraction = float(text[:-1]) / 100
        elif "." in text:
            fraction = float(text)
        else:
            count = int(text)
            if count < 0:
                raise ValueError
            return count, None
    except ValueError:
        raise ApplicationError(
            f"'{value}' is not a budget: give a number of comparisons (120), a fraction "
            "(0.3) or a percentage (30%)."
        ) from None
    if not 0.0 <= fraction <= 1.0:
        raise ApplicationError("A budget fraction must be between 0 and 1 (0 % and 100 %).")
    return None, fraction


def routing_settings_update(
    *,
    project: Project,
    policy: str | None = None,
    budget: str | None = None,
    human_budget: int | None = None,
    human_budget_fraction: float | None = None,
    clear_budget: bool = False,
) -> RoutingSettings:
    """Set the routing policy and/or the human budget. `budget` is text ('', '120', '0.3',
    '30%') and replaces both budget fields; or give the fields themselves. Everything is
    validated before anything is written."""
    if policy is not None and policy not in policies.POLICIES:
        raise ApplicationError(
            f"Unknown routing policy '{policy}': use one of {', '.join(policies.POLICIES)}."
        )
    fields = []
    if budget is not None:
        human_budget, human_budget_fraction = _budget_parse(budget)
        clear_budget = True
    if human_budget is not None and human_budget < 0:
        raise ApplicationError("The human budget cannot be negative.")
    if human_budget_fraction is not None and not 0.0 <= human_budget_fraction <= 1.0:
        raise ApplicationError("A budget fraction must be between 0 and 1.")
    current, _ = RoutingSettings.objects.get_or_create(project=project)
    if policy is not None:
        current.policy = policy
        fields.append("policy")
    if clear_budget or human_budget is not None:
        current.human_budget = human_budget
        fields.append("human_budget")
    if clear_budget or human_budget_fraction is not None:
        current.human_budget_fraction = human_budget_fraction
        fields.append("human_budget_fraction")
    if fields:
        current.save(update_fields=fields)
    return current
