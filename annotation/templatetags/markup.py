"""`{{ text|markdown }}`: untrusted Markdown (model outputs, prompts, instructions) as HTML.

The one way such text reaches a page as markup: markdown_render sanitises it with nh3, and
only its output is marked safe. Anything else in a template stays autoescaped.
"""

from __future__ import annotations

from django import template
from django.utils.safestring import SafeString, mark_safe

from annotation.services.rendering import markdown_render

register = template.Library()


@register.filter
def markdown(value: object) -> SafeString:
    text = "" if value is None else value if isinstance(value, str) else str(value)
    return mark_safe(markdown_render(text=text))  # noqa: S308 (sanitised by nh3)


@register.filter
def instructions(value: object) -> SafeString:
    """A project's instructions, written by its admins: like `markdown`, images allowed."""
    text = "" if value is None else str(value)
    return mark_safe(markdown_render(text=text, images=True))  # noqa: S308 (sanitised by nh3)
