from __future__ import annotations

from django import forms

from curation.judges.models import AIAnnotator, AIJudgingRun
from curation.judges.verdicts import DEFAULT_TEMPLATE


class AnnotatorForm(forms.Form):
    """Create (name and kind) or edit (settings, key, active) an AI annotator. The key is
    write-only: the field is never filled in from the stored value."""

    name = forms.CharField(max_length=100)
    kind = forms.ChoiceField(choices=AIAnnotator.Kind.choices)
    is_active = forms.BooleanField(required=False, initial=True, label="Active")
    base_url = forms.CharField(
        max_length=500,
        required=False,
        label="Base URL",
        help_text="Remote only: e.g. https://api.example.com/v1 (we POST to /chat/completions).",
    )
    model = forms.CharField(max_length=100, required=False, help_text="Remote only.")
    api_key = forms.CharField(
        max_length=500,
        required=False,
        label="API key",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Remote only. Write-only: leave empty to keep the stored key.",
    )
    clear_api_key = forms.BooleanField(required=False, label="Remove the stored key")
    prompt_template = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 6, "cols": 70}),
        help_text="LLM judges: {prompt}, {response_a} and {response_b}; empty for the default.",
    )
    timeout = forms.FloatField(required=False, min_value=0.1, help_text="Remote: seconds.")
    max_attempts = forms.IntegerField(
        required=False, min_value=1, max_value=10, help_text="Remote: tries per request."
    )

    def __init__(self, *args, annotator: AIAnnotator | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.annotator = annotator
        self.fields["prompt_template"].widget.attrs["placeholder"] = DEFAULT_TEMPLATE
        if annotator is not None:
            # The name is the judgements' source ("ai:<name>") and the kind their meaning.
            for field in ("name", "kind"):
                self.fields[field].disabled = True
                self.fields[field].required = False

    def settings(self) -> dict:
        data = self.cleaned_data
        return {
            key: data.get(key)
            for key in ("base_url", "model", "prompt_template", "timeout", "max_attempts")
            if data.get(key) not in (None, "")
        }

    @staticmethod
    def initial_for(annotator: AIAnnotator) -> dict:
        return {
            "name": annotator.name,
            "kind": annotator.kind,
            "is_active": annotator.is_active,
            **{
                key: annotator.settings.get(key)
                for key in ("base_url", "model", "prompt_template", "timeout", "max_attempts")
            },
        }


class RunForm(forms.Form):
    scope = forms.ChoiceField(
        choices=[
            (AIJudgingRun.Scope.ALL, "All comparisons"),
            (AIJudgingRun.Scope.ROUTED, "Only those routed to AI (route ai or both)"),
        ],
        initial=AIJudgingRun.Scope.ALL,
    )
