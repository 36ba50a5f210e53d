from __future__ import annotations

from django import forms

from annotation.models import ImportJob


class ImportForm(forms.Form):
    file = forms.FileField(help_text=".jsonl, .jsonl.gz, .csv or .parquet")
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
            (".jsonl", ".jsonl.gz", ".json", ".ndjson", ".csv", ".csv.gz", ".parquet")
        ):
            raise forms.ValidationError("Upload a .jsonl, .jsonl.gz, .csv or .parquet file.")
        return f
