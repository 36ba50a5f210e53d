"""Signals other apps listen to; annotation itself never imports them (apps depend one way:
curation -> scoring -> annotation)."""

from django.dispatch import Signal

# Sent after an import's transaction has committed, with `project_id`.
pairs_imported = Signal()

# Sent after the transaction that changed comparison labels has committed, with
# `project_ids` (a set): the scoring app counts new labels towards automatic training.
labels_changed = Signal()
