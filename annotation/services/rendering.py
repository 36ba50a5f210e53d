"""Markdown written by project admins (instructions), rendered for annotators' browsers.

Python-Markdown passes raw HTML through untouched, so its output is never trusted: nh3
(ammonia) then keeps only the tags and attributes that prose and code need, and only
http(s)/mailto links. Everything else (scripts, event handlers, iframes, SVG, javascript:
URLs, inline styles) is removed.
"""

from __future__ import annotations

import markdown
import nh3
from django.utils.safestring import SafeString, mark_safe

_EXTENSIONS = ["fenced_code", "tables", "sane_lists"]

ALLOWED_TAGS = frozenset(
    {
        # prose
        "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote",
        "strong", "em", "b", "i", "del", "s", "sup", "sub", "abbr",
        "ul", "ol", "li", "dl", "dt", "dd", "a",
        # code
        "code", "pre", "kbd", "samp",
        # tables
        "table", "thead", "tbody", "tr", "th", "td",
    }
)  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "abbr": {"title"},
    # fenced_code writes the language as class="language-python".
    "code": {"class"},
    "ol": {"start"},
    "th": {"align"},
    "td": {"align"},
}
# Removed together with their content, not just unwrapped.
DROPPED_WITH_CONTENT = frozenset({"script", "style", "iframe", "object", "embed", "noscript"})
URL_SCHEMES = frozenset({"http", "https", "mailto"})


def markdown_render(*, text: str, images: bool = False) -> SafeString:
    """Markdown to HTML that is safe to put in a page as it is.

    Images only with `images=True` (admins' instructions): in model outputs an <img> is a
    tracking pixel that tells a third party who is labelling and when."""
    tags = set(ALLOWED_TAGS) | ({"img"} if images else set())
    html = markdown.markdown(
        text,
        extensions=_EXTENSIONS,
        # Alignment as an attribute, so that no style attribute has to be allowed.
        extension_configs={"tables": {"use_align_attribute": True}},
        output_format="html",
    )
    cleaned = nh3.clean(
        html,
        tags=tags,
        attributes=ALLOWED_ATTRIBUTES,
        clean_content_tags=set(DROPPED_WITH_CONTENT),
        url_schemes=set(URL_SCHEMES),
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )
    return mark_safe(cleaned)  # noqa: S308 (sanitised by nh3 just above)
