"""Writes of the scoring app, split by job: embeddings, training, scores, project settings."""
