"""Views, one module per area: data (import/export), people (members, settings, home),
labelling (the annotation page), review (disagreements, agreement), media (private files)."""
