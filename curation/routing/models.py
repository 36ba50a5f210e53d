"""Routing: AI annotators and the per-comparison human/AI routing decisions."""
