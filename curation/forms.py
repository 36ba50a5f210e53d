from __future__ import annotations

from django import forms

from annotation.models import Judgement
from curation.models import Action, CurationPolicy, Detector

SORTS = [("-score", "Highest score first"), ("score", "Lowest score first"), ("id", "Pair id")]
STATES = [("open", "Not reviewed"), ("reviewed", "Reviewed"), ("all", "All")]


class FlagFilterForm(forms.Form):
    """The curation page's filters (GET); bad values fall back to the defaults."""

    detector = forms.ChoiceField(choices=[("", "Any detector"), *Detector.choices], required=False)
    source = forms.ChoiceField(
        choices=[("", "Any label source"), *Judgement.SourceKind.choices],
        required=False,
        label="Label source",
    )
    state = forms.ChoiceField(choices=STATES, required=False, initial="all")
    sort = forms.ChoiceField(choices=SORTS, required=False, initial="-score")

    def filters(self) -> dict[str, str]:
        data = self.cleaned_data if self.is_valid() else {}
        return {
            "detector": data.get("detector") or "",
            "source": data.get("source") or "",
            "state": data.get("state") or "all",
            "sort": data.get("sort") or "-score",
        }


class CurationActionForm(forms.Form):
    """One action on one or more pairs (the per-pair buttons and the bulk bar)."""

    action = forms.ChoiceField(
        choices=[
            (a.value, a.label) for a in (Action.DROP, Action.FLIP, Action.REQUEUE, Action.KEEP)
        ],
        error_messages={"required": "Choose an action.", "invalid_choice": "Unknown action."},
    )
    comparisons = forms.TypedMultipleChoiceField(
        coerce=int,
        error_messages={"required": "Select at least one pair."},
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Any integer is accepted here; the service checks that each is the project's.
        self.fields["comparisons"].valid_value = lambda value: str(value).isdigit()


class CurationPolicyForm(forms.ModelForm):
    class Meta:
        model = CurationPolicy
        fields = ["enabled", "detector", "threshold", "action"]
        labels = {"enabled": "Apply automatically after each run"}
        widgets = {"threshold": forms.NumberInput(attrs={"step": "0.01", "min": 0, "max": 1})}

    def clean_threshold(self) -> float:
        value = self.cleaned_data["threshold"]
        if not 0.0 <= value <= 1.0:
            raise forms.ValidationError("The threshold is a score between 0 and 1.")
        return value
