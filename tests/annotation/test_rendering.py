"""Instructions Markdown: rendered for prose and code, with every way of running script removed."""

from __future__ import annotations

import re

import pytest
from django.utils.safestring import SafeString

from annotation.services.rendering import markdown_render

XSS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "[x](javascript:alert(1))",
    '<a href="javascript:alert(1)">x</a>',
    '<a href="JaVaScRiPt:alert(1)">x</a>',
    '<a href="jav&#x09;ascript:alert(1)">x</a>',
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "<svg onload=alert(1)><circle r=1 /></svg>",
    '<iframe src="https://example.com/"></iframe>',
    '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
    "<details open ontoggle=alert(1)>x</details>",
    '<p style="background:url(javascript:alert(1))" onclick="alert(1)">x</p>',
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    '<form action="javascript:alert(1)"><button>go</button></form>',
    "<object data=x.swf></object><embed src=x.swf>",
]


@pytest.mark.parametrize("payload", XSS)
def test_script_vectors_are_removed(payload):
    html = markdown_render(text=f"Intro\n\n{payload}\n\nOutro").lower()
    # What a browser would act on: the tags and their attributes. A link CommonMark refuses
    # ("[x](javascript:...)") stays as escaped text, which runs nothing.
    markup = " ".join(re.findall(r"<[^>]*>", html))
    for bad in (
        "<script",
        "javascript:",
        "data:",
        "onerror",
        "onload",
        "onclick",
        "ontoggle",
        "<svg",
        "<iframe",
        "<object",
        "<embed",
        "<form",
        "<math",
        "<style",
        "style=",
        "srcdoc",
    ):
        assert bad not in markup, (payload, html)
    assert "<p>intro</p>" in html


def test_script_content_is_dropped_not_shown_as_text():
    html = markdown_render(text="<script>steal(document.cookie)</script>after")
    assert "steal" not in html
    assert "after" in html


def test_prose_code_and_tables_are_kept():
    text = (
        "# Guide\n\nPrefer the **more helpful** answer, see [the rubric](https://example.com/r).\n\n"
        "1. read both\n2. choose\n\n"
        "```python\nif a < b:\n    print('<b>')\n```\n\n"
        "| aspect | scale |\n|:--|--:|\n| helpfulness | 0-4 |\n"
    )
    html = markdown_render(text=text)
    assert isinstance(html, SafeString)
    assert "<h1>Guide</h1>" in html
    assert "<strong>more helpful</strong>" in html
    assert '<a href="https://example.com/r" rel="noopener noreferrer nofollow">' in html
    assert "<ol>" in html
    assert "<li>read both</li>" in html
    # Code is escaped, not interpreted; its language class survives for highlighting.
    assert '<pre><code class="language-python">if a &lt; b:' in html
    assert "print('&lt;b&gt;')" in html
    assert '<th align="left">aspect</th>' in html
    assert '<td align="right">0-4</td>' in html


def test_an_image_in_instructions_keeps_its_source_and_alt_text():
    html = markdown_render(text="![chart](https://example.com/c.png)", images=True)
    assert html == '<p><img src="https://example.com/c.png" alt="chart"></p>'


def test_images_in_model_output_are_removed():
    # An <img> in untrusted text would be a tracking pixel for whoever labels it.
    html = markdown_render(text='![x](https://t.example/p.gif) <img src="https://t.example/q.gif">')
    assert "<img" not in html
    assert "t.example" not in html


def test_empty_text_renders_nothing():
    assert markdown_render(text="") == ""


def test_commonmark_headings_need_a_space_after_the_hash():
    # hh-rlhf answers number their lines "#1: ..."; CommonMark (what LLMs write) keeps them
    # as text, where Python-Markdown made each a page-sized heading.
    html = markdown_render(text="#1: The Public Library\n#2: The Park\n\n# A heading")
    assert "<p>#1: The Public Library\n#2: The Park</p>" in html
    assert "<h1>A heading</h1>" in html


def test_gfm_strikethrough_and_tables():
    html = markdown_render(text="~~old~~ new\n\n| a | b |\n|---|---|\n| 1 | 2 |")
    assert "<s>old</s> new" in html
    assert "<td>1</td>" in html


def test_code_keeps_only_its_language_class():
    # Model output may not borrow the app's classes (a fake button, a hidden notice).
    html = markdown_render(
        text='<code class="language-python btn primary">x</code>\n\n'
        '<code class="visually-hidden">y</code>'
    )
    assert '<code class="language-python">x</code>' in html
    assert "<code>y</code>" in html
    assert "btn" not in html
    assert "visually-hidden" not in html
