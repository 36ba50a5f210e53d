"""Writes of the curation app, split by job: runs, actions, policy, annotator reliability."""
