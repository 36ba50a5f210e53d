"""Markdown (model outputs, prompts, admins' instructions), rendered for annotators' browsers.

CommonMark with GFM's tables and strikethrough (markdown-it-py): the dialect LLMs write, so
that "#1: The Public Library" (no space after "#") stays a line of text, as in CommonMark,
and does not become a heading. Raw HTML passes through the parser, so its output is never
trusted: nh3 (ammonia) then keeps only the tags and attributes that prose and code need, and
only http(s)/mailto links. Everything else (scripts, event handlers, iframes, SVG,
javascript: URLs, inline styles) is removed.
"""

from __future__ import annotations

import re

import nh3
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

_MD = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])

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


_LANGUAGE_CLASS = re.compile(r"language-[A-Za-z0-9_+#.-]{1,40}")


def _attribute_filter(tag: str, attribute: str, value: str) -> str | None:
    """A fenced block's `language-*` class is the only class kept: model output may not
    borrow the app's own classes (a fake button, a hidden notice)."""
    if attribute == "class":
        kept = [c for c in value.split() if _LANGUAGE_CLASS.fullmatch(c)]
        return " ".join(kept) or None
    return value


def markdown_render(*, text: str, images: bool = False) -> SafeString:
    """Markdown to HTML that is safe to put in a page as it is.

    Images only with `images=True` (admins' instructions): in model outputs an <img> is a
    tracking pixel that tells a third party who is labelling and when."""
    tags = set(ALLOWED_TAGS) | ({"img"} if images else set())
    tokens = _MD.parse(text)
    for token in tokens:
        # Table alignment as an attribute, so that no style attribute has to be allowed.
        if token.type in ("th_open", "td_open") and (style := token.attrGet("style")):
            token.attrs = {"align": style.removeprefix("text-align:")}
    html = _MD.renderer.render(tokens, _MD.options, {})
    cleaned = nh3.clean(
        html,
        tags=tags,
        attributes=ALLOWED_ATTRIBUTES,
        clean_content_tags=set(DROPPED_WITH_CONTENT),
        url_schemes=set(URL_SCHEMES),
        link_rel="noopener noreferrer nofollow",
        attribute_filter=_attribute_filter,
        strip_comments=True,
    )
    return mark_safe(cleaned.strip())  # noqa: S308 (sanitised by nh3 just above)
