from __future__ import annotations

from django import forms


class ScoringSettingsForm(forms.Form):
    auto_train_every = forms.IntegerField(
        min_value=1,
        required=False,
        label="Train automatically every",
        help_text="New labels between automatic reward-model runs; empty: train by hand only.",
    )
    ensemble_members = forms.IntegerField(
        min_value=1,
        max_value=32,
        label="Ensemble size M",
        help_text="Reward-model heads per run; their spread measures uncertainty.",
    )
    find_noisy_after_training = forms.BooleanField(
        required=False,
        label="Find noisy pairs after training",
        help_text="Each new active model runs the curation page's Find noisy pairs.",
    )
