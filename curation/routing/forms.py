from __future__ import annotations

from django import forms

from curation.routing.models import RoutingPolicy


class RoutingSettingsForm(forms.Form):
    policy = forms.ChoiceField(choices=RoutingPolicy.choices)
    budget = forms.CharField(
        required=False,
        max_length=20,
        label="Human budget",
        help_text="A number of comparisons (120), a fraction (0.3) or a percentage (30%); "
        "empty: no limit.",
    )
