"""Signals of the scoring app (curation listens; scoring never imports curation)."""

from django.dispatch import Signal

# Sent after the transaction that made a model version active has committed, with
# `version_id` and `project_id`: routing re-runs, curation may re-score.
model_version_activated = Signal()
