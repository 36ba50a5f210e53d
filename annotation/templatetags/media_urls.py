"""`{% media_url project name %}`: the private URL of a stored media file in a project.

The URL names the file by its content hash and extension only (`<hash><ext>`): no file name
from the import and nothing else that could give a candidate's source away.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from django import template
from django.urls import reverse

register = template.Library()


@register.simple_tag
def media_url(project, name: object) -> str:
    """`name`: a Candidate.file or Prompt.media (or its storage name); "" when empty."""
    name = getattr(name, "name", name)
    if not name:
        return ""
    return reverse("annotation:media", args=[project.slug, PurePosixPath(str(name)).name])
