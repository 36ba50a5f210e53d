"""The project's label schema: a small JSON document, validated where it enters.

Example (HelpSteer2-style aspects, strength, optional rationale)::

    {"mode": "pairwise", "allow_tie": true, "allow_both_bad": false,
     "strength": ["slight", "clear", "strong"],
     "aspects": [{"name": "helpfulness", "min": 0, "max": 4}],
     "rationale": "optional"}

Ranking mode: {"mode": "ranking", "top_k": 3, "allow_ties": true, ...}.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError

RATIONALE_OPTIONS = ("off", "optional", "required")
# Caps: every pair page draws the schema (an <option> per aspect value, a key per strength
# level), on web workers all projects share; a schema past these is refused, not drawn.
MAX_STRENGTH_LEVELS = 8  # one key each (annotation.forms.STRENGTH_KEYS)
MAX_ASPECTS = 20
MAX_ASPECT_SPAN = 100  # max - min: at most 101 values to pick from
MAX_NAME_CHARS = 100  # a strength level's or an aspect's name
MAX_TOP_K = 100
_KEYS = {
    "mode",
    "allow_tie",
    "allow_both_bad",
    "strength",
    "aspects",
    "rationale",
    "top_k",
    "allow_ties",
}


def label_schema_default() -> dict[str, Any]:
    return {
        "mode": "pairwise",
        "allow_tie": True,
        "allow_both_bad": False,
        "strength": ["slight", "clear", "strong"],
        "aspects": [],
        "rationale": "optional",
    }


def label_schema_validate(value: Any) -> None:
    """Raise ValidationError naming the field at fault."""
    if not isinstance(value, dict):
        raise ValidationError("The label schema must be a JSON object.")
    unknown = set(value) - _KEYS
    if unknown:
        raise ValidationError(f"Unknown label schema field(s): {', '.join(sorted(unknown))}.")
    mode = value.get("mode", "pairwise")
    if mode not in ("pairwise", "ranking"):
        raise ValidationError("label schema 'mode' must be 'pairwise' or 'ranking'.")
    for key in ("allow_tie", "allow_both_bad", "allow_ties"):
        if key in value and not isinstance(value[key], bool):
            raise ValidationError(f"label schema '{key}' must be true or false.")
    strength = value.get("strength", [])
    if not isinstance(strength, list) or not all(
        isinstance(s, str) and s.strip() for s in strength
    ):
        raise ValidationError("label schema 'strength' must be a list of level names.")
    if len(set(strength)) != len(strength):
        raise ValidationError("label schema 'strength' levels must be distinct.")
    if len(strength) > MAX_STRENGTH_LEVELS:
        raise ValidationError(
            f"label schema 'strength' has {len(strength)} levels; at most {MAX_STRENGTH_LEVELS}."
        )
    _names_check(strength, "label schema 'strength'")
    aspects = value.get("aspects", [])
    if not isinstance(aspects, list):
        raise ValidationError("label schema 'aspects' must be a list.")
    if len(aspects) > MAX_ASPECTS:
        raise ValidationError(
            f"label schema 'aspects' has {len(aspects)} aspects; at most {MAX_ASPECTS}."
        )
    names = set()
    for i, aspect in enumerate(aspects):
        where = f"label schema 'aspects[{i}]'"
        if not isinstance(aspect, dict) or not isinstance(aspect.get("name"), str):
            raise ValidationError(f"{where} must be an object with a 'name'.")
        _names_check([aspect["name"]], where)
        lo, hi = aspect.get("min", 0), aspect.get("max")
        if not _is_int(lo) or not _is_int(hi) or lo >= hi:
            raise ValidationError(f"{where} needs integer 'min' < 'max'.")
        if hi - lo > MAX_ASPECT_SPAN:
            raise ValidationError(
                f"{where} spans {hi - lo:,} steps ({lo} to {hi}); at most {MAX_ASPECT_SPAN}."
            )
        if aspect["name"] in names:
            raise ValidationError(f"{where}: aspect '{aspect['name']}' is declared twice.")
        names.add(aspect["name"])
    if value.get("rationale", "off") not in RATIONALE_OPTIONS:
        raise ValidationError("label schema 'rationale' must be one of off, optional, required.")
    top_k = value.get("top_k")
    if top_k is not None and (
        mode != "ranking" or not _is_int(top_k) or not 1 <= top_k <= MAX_TOP_K
    ):
        raise ValidationError(
            f"label schema 'top_k' is an integer from 1 to {MAX_TOP_K}, for ranking mode only."
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _names_check(names: list[str], where: str) -> None:
    for name in names:
        if len(name) > MAX_NAME_CHARS:
            raise ValidationError(
                f"{where}: the name '{name[:20]}...' is {len(name):,} characters; "
                f"at most {MAX_NAME_CHARS}."
            )


def label_schema_choices(value: dict[str, Any]) -> set[str]:
    """The choices (annotation.models.Choice values) a valid schema lets a judgement make.
    A flag that is left out is off: the schema says what it allows."""
    allowed = {"a", "b"}
    tie_key = "allow_ties" if value.get("mode", "pairwise") == "ranking" else "allow_tie"
    if value.get(tie_key, False):
        allowed.add("tie")
    if value.get("allow_both_bad", False):
        allowed.add("both_bad")
    return allowed
