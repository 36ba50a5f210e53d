"""Curation: noise flags on comparisons and the audited, reversible actions taken on them."""
