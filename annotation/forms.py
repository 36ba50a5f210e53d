from __future__ import annotations

import json
import re

from django import forms

from annotation.models import Choice, ImportJob, Membership
from annotation.schema import label_schema_choices, label_schema_validate
from annotation.services.queue import Answer


class ImportForm(forms.Form):
    file = forms.FileField(
        help_text=".jsonl, .jsonl.gz, .csv or .parquet; images or audio: a .zip of a manifest "
        "and its files"
    )
    format = forms.ChoiceField(choices=ImportJob.Format.choices, initial="auto")
    pairs = forms.ChoiceField(
        choices=[("all", "All pairs (up to the cap)"), ("adjacent", "Adjacent ranks only")],
        initial="all",
        help_text="For prompt + N responses.",
    )
    max_pairs = forms.IntegerField(
        min_value=1, max_value=1000, initial=45, label="Max pairs per prompt"
    )

    def clean_file(self):
        f = self.cleaned_data["file"]
        name = f.name.lower()
        if not name.endswith(
            (".jsonl", ".jsonl.gz", ".json", ".ndjson", ".csv", ".csv.gz", ".parquet", ".zip")
        ):
            raise forms.ValidationError(
                "Upload a .jsonl, .jsonl.gz, .csv, .parquet or (with media) .zip file."
            )
        return f


# ---------------------------------------------------------------- members and settings


class MemberAddForm(forms.Form):
    identifier = forms.CharField(
        max_length=254, label="Username or email", widget=forms.TextInput(attrs={"size": 30})
    )
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.ANNOTATOR)


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Membership.Role.choices)


class PrettyJSONField(forms.JSONField):
    """A JSON textarea that shows the document indented, so that it is editable by hand."""

    def prepare_value(self, value):
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value, indent=2, ensure_ascii=False)


class ProjectSettingsForm(forms.Form):
    name = forms.CharField(max_length=200)
    instructions = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 10}),
        help_text="Markdown. Shown to annotators; HTML is sanitised.",
    )
    label_schema = PrettyJSONField(
        validators=[label_schema_validate],
        widget=forms.Textarea(attrs={"rows": 12, "spellcheck": "false"}),
        help_text=(
            'JSON, e.g. {"mode": "pairwise", "allow_tie": true, "allow_both_bad": false, '
            '"strength": ["slight", "clear", "strong"], "aspects": [], "rationale": "optional"}.'
        ),
    )
    overlap = forms.IntegerField(
        min_value=1, max_value=100, label="Overlap k", help_text="Humans per comparison."
    )
    gold_ratio = forms.FloatField(
        min_value=0, max_value=1, help_text="Share of gold comparisons served, from 0 to 1."
    )
    require_full_play = forms.BooleanField(
        required=False,
        label="Require full plays",
        help_text="Audio: accept an answer only once every clip was played to its end.",
    )

    def __init__(self, *args, preview_url: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # The live preview: htmx re-posts the form to the preview URL as the admin types.
        self.fields["instructions"].widget.attrs.update(
            {
                "hx-post": preview_url,
                "hx-trigger": "keyup changed delay:300ms",
                "hx-target": "#preview",
                "hx-swap": "outerHTML",
            }
        )


GOLD_CLEAR = "clear"


class GoldForm(forms.Form):
    ids = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        label="Comparisons",
        help_text="Separated by spaces, commas or new lines.",
    )
    by = forms.ChoiceField(
        choices=[("id", "Comparison ids"), ("external_id", "External ids (from the file)")],
        initial="id",
        widget=forms.RadioSelect,
        label="The ids are",
    )
    label = forms.ChoiceField(
        choices=[*Choice.choices, (GOLD_CLEAR, "Not gold (unmark)")],
        label="Gold label",
        help_text="A and B are the comparison's candidate_a and candidate_b as stored, "
        "not the sides an annotator happens to see them on.",
    )

    def clean_ids(self) -> list[str]:
        return [i for i in re.split(r"[\s,;]+", self.cleaned_data["ids"]) if i]

    def clean_label(self) -> str | None:
        label = self.cleaned_data["label"]
        return None if label == GOLD_CLEAR else label


# ---------------------------------------------------------------- review

RESOLVE_CHOICES = [
    (Choice.A, "A is better"),
    (Choice.B, "B is better"),
    (Choice.TIE, "Tie"),
    (Choice.BOTH_BAD, "Both bad"),
]


class LabelResolveForm(forms.Form):
    label = forms.ChoiceField(choices=RESOLVE_CHOICES, widget=forms.RadioSelect)
    note = forms.CharField(
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        help_text="Why this label: the next reviewer reads it.",
    )

    def __init__(self, *args, comparison, project=None, **kwargs) -> None:
        # The review page holds one form per comparison: ids must not repeat.
        kwargs.setdefault("auto_id", f"resolve-{comparison.pk}-%s")
        kwargs.setdefault("initial", {"label": comparison.label})
        super().__init__(*args, **kwargs)
        # Only the labels the project's schema allows (the service checks it as well).
        # `project`: the page's own, so a page of N forms reads no project N times.
        allowed = label_schema_choices((project or comparison.project).label_schema)
        self.fields["label"].choices = [c for c in RESOLVE_CHOICES if c[0] in allowed]


# ---------------------------------------------------------------- labelling

CHOICE_MESSAGE = "Choose A, B, tie or both bad."
STRENGTH_KEYS = "qwertyui"


class LabelForm(forms.Form):
    """An answer in screen terms, its controls built from the project's label schema.

    The form only parses; what the schema allows (ties, strength range, aspect ranges, a
    required rationale) is checked by the queue service, so that every way in obeys it."""

    choice = forms.ChoiceField(
        choices=[("left", "A"), ("right", "B"), ("tie", "Tie"), ("both_bad", "Both bad")],
        error_messages={"required": CHOICE_MESSAGE, "invalid_choice": CHOICE_MESSAGE},
    )
    strength = forms.IntegerField(
        required=False, error_messages={"invalid": "Pick a strength from the project's scale."}
    )
    rationale = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3, "maxlength": 10_000})
    )
    time_spent_ms = forms.IntegerField(
        required=False, min_value=0, max_value=2_000_000_000, widget=forms.HiddenInput
    )

    def __init__(self, *args, schema: dict, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.schema = schema
        self.aspects = schema.get("aspects") or []
        for side in ("left", "right"):
            for aspect in self.aspects:
                lo, hi = aspect.get("min", 0), aspect["max"]
                self.fields[self._aspect_field(side, aspect["name"])] = forms.IntegerField(
                    required=False,
                    label=aspect["name"],
                    widget=forms.Select(choices=[("", "–"), *((v, v) for v in range(lo, hi + 1))]),
                    error_messages={"invalid": f"Rate {aspect['name']} from {lo} to {hi}."},
                )
        if schema.get("rationale") == "required":
            self.fields["rationale"].widget.attrs["required"] = True

    @staticmethod
    def _aspect_field(side: str, name: str) -> str:
        return f"aspect-{side}-{name}"

    # What the template draws, from the schema: keys are the keyboard shortcuts.

    @property
    def choice_options(self) -> list[dict]:
        options = [("left", "A", "1"), ("right", "B", "2")]
        if self.schema.get("allow_tie"):
            options.append(("tie", "Tie", "3"))
        if self.schema.get("allow_both_bad"):
            options.append(("both_bad", "Both bad", "4"))
        chosen = self["choice"].value()
        return [
            {"value": v, "label": label, "key": key, "checked": chosen == v}
            for v, label, key in options
        ]

    @property
    def strength_options(self) -> list[dict]:
        chosen = str(self["strength"].value())
        return [
            {
                "value": i,
                "label": name,
                "key": STRENGTH_KEYS[i] if i < len(STRENGTH_KEYS) else "",
                "checked": chosen == str(i),
            }
            for i, name in enumerate(self.schema.get("strength") or [])
        ]

    @property
    def left_aspects(self) -> list[forms.BoundField]:
        return [self[self._aspect_field("left", a["name"])] for a in self.aspects]

    @property
    def right_aspects(self) -> list[forms.BoundField]:
        return [self[self._aspect_field("right", a["name"])] for a in self.aspects]

    @property
    def rationale_mode(self) -> str:
        return self.schema.get("rationale", "off")

    def answer(self) -> Answer:
        data = self.cleaned_data
        aspects = {}
        for side in ("left", "right"):
            ratings = {
                a["name"]: data[self._aspect_field(side, a["name"])]
                for a in self.aspects
                if data.get(self._aspect_field(side, a["name"])) is not None
            }
            if ratings:
                aspects[side] = ratings
        return Answer(
            choice=data["choice"],
            strength=data["strength"],
            aspects=aspects or None,
            rationale=data["rationale"] if self.rationale_mode != "off" else "",
            time_spent_ms=data["time_spent_ms"],
        )


class SkipForm(forms.Form):
    TOO_LONG = "Keep the reason for skipping under 500 characters."

    reason = forms.CharField(required=False, max_length=500)


class RankingForm(forms.Form):
    """A ranking as the page posts it: tie groups of candidate ids, best first, as JSON.
    The form checks the shape only; the ranking service checks it against the item and the
    project's schema."""

    ORDER_MESSAGE = "Order the candidates, best first."

    order = forms.JSONField(
        widget=forms.HiddenInput,
        error_messages={"required": ORDER_MESSAGE, "invalid": ORDER_MESSAGE},
    )
    time_spent_ms = forms.IntegerField(
        required=False, min_value=0, max_value=2_000_000_000, widget=forms.HiddenInput
    )

    def clean_order(self) -> list[list[int]]:
        order = self.cleaned_data["order"]
        if not isinstance(order, list) or not all(isinstance(g, list) for g in order):
            raise forms.ValidationError(self.ORDER_MESSAGE)
        return order
