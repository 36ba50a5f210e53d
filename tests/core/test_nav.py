"""The project navigation bar: one bar on every project page, only the pages the role may
open (each answering 200), the current page marked, and no query of its own."""

from __future__ import annotations

import re

import pytest
from django.template import engines
from django.test import RequestFactory
from django.urls import resolve, reverse

from annotation.selectors import project_get_for
from tests.factories import PASSWORD, UserFactory, comparison_make

pytestmark = pytest.mark.django_db

ALL = [
    "overview",
    "label",
    "review",
    "models",
    "curation",
    "routing",
    "ai-annotators",
    "members",
    "settings",
    "import-export",
]
ALLOWED = {
    "admin": ALL,
    "reviewer": ["overview", "label", "review", "models", "curation"],
    "annotator": ["overview", "label"],
}
# A couple of the pages each role opens.
PAGES = {
    "admin": ["annotation:project", "scoring:models", "annotation:members", "routing:page"],
    "reviewer": ["annotation:project", "annotation:review", "curation:curation"],
    "annotator": ["annotation:project", "annotation:label"],
}
_NAV = re.compile(r'<nav class="project-nav"[^>]*>(.*?)</nav>', re.S)
_LINK = re.compile(r'<a href="([^"]+)" data-nav="([^"]+)"( aria-current="page")?>')


def _login(client, user) -> None:
    assert client.login(username=user.username, password=PASSWORD)


def _bar(html: str) -> list[tuple[str, str, bool]]:
    """(key, href, current) of each link of the page's one navigation bar."""
    bars = _NAV.findall(html)
    assert len(bars) == 1, f"{len(bars)} navigation bars"
    return [(key, href, bool(current)) for href, key, current in _LINK.findall(bars[0])]


@pytest.mark.parametrize("persona", ["admin", "reviewer", "annotator"])
def test_the_bar_shows_exactly_what_the_role_may_open(client, project, persona, request):
    user = request.getfixturevalue(persona)
    comparison_make(project)
    _login(client, user)
    for name in PAGES[persona]:
        response = client.get(reverse(name, args=[project.slug]))
        assert response.status_code == 200, name
        links = _bar(response.content.decode())
        assert [key for key, _, _ in links] == ALLOWED[persona], name
    # Every link of the bar opens for this role: no 404 behind a link it shows.
    for key, href, _ in links:
        assert client.get(href).status_code == 200, key
    # ... and every page it leaves out is closed to the role.
    for name in {"annotation:review", "scoring:models", "annotation:members", "routing:page"}:
        url = reverse(name, args=[project.slug])
        if url not in {href for _, href, _ in links}:
            assert client.get(url).status_code == 404, name


@pytest.mark.parametrize(
    ("url_name", "args", "current"),
    [
        ("annotation:project", [], "overview"),
        ("scoring:models", [], "models"),
        ("curation:annotators", [], "curation"),
        ("annotation:settings", [], "settings"),
        ("annotation:import", [], "import-export"),
    ],
)
def test_the_current_page_is_marked(client, project, admin, url_name, args, current):
    _login(client, admin)
    response = client.get(reverse(url_name, args=[project.slug, *args]))
    assert response.status_code == 200
    marked = [key for key, _, is_current in _bar(response.content.decode()) if is_current]
    assert marked == [current]
    assert response.content.decode().count('aria-current="page"') == 1


def test_a_superuser_sees_the_admin_bar(client, project):
    root = UserFactory(username="root", is_superuser=True, is_staff=True)
    _login(client, root)
    response = client.get(reverse("annotation:project", args=[project.slug]))
    assert [key for key, _, _ in _bar(response.content.decode())] == ALL


def test_the_project_page_has_no_link_rows_besides_the_bar(client, project, admin):
    _login(client, admin)
    html = client.get(reverse("annotation:project", args=[project.slug])).content.decode()
    outside = _NAV.sub("", html)
    for name in (
        "annotation:label",
        "scoring:models",
        "curation:curation",
        "routing:page",
        "judges:annotators",
        "annotation:members",
        "annotation:settings",
    ):
        assert f'href="{reverse(name, args=[project.slug])}"' not in outside, name
    # The data card keeps its actions: import a file, the exports.
    assert f'href="{reverse("annotation:import", args=[project.slug])}"' in outside
    assert reverse("annotation:export", args=[project.slug, "jsonl"]) in outside


@pytest.mark.parametrize(
    "url_name", ["annotation:members", "annotation:settings", "routing:page", "scoring:models"]
)
def test_pages_lose_the_back_link_the_bar_replaces(client, project, admin, url_name):
    _login(client, admin)
    html = client.get(reverse(url_name, args=[project.slug])).content.decode()
    assert "←" not in html
    assert len(_bar(html)) == len(ALL)


def test_the_import_page_is_import_and_export(client, project, admin):
    _login(client, admin)
    html = client.get(reverse("annotation:import", args=[project.slug])).content.decode()
    assert 'id="import-form"' in html
    assert reverse("annotation:export", args=[project.slug, "parquet"]) in html


def test_htmx_fragments_carry_no_bar(client, project, admin):
    _login(client, admin)
    response = client.get(
        reverse("scoring:models", args=[project.slug]),
        headers={"HX-Request": "true", "HX-Target": "runs"},
    )
    assert response.status_code == 200
    assert b"project-nav" not in response.content


def test_the_bar_makes_no_query_of_its_own(project, annotator, django_assert_num_queries):
    # As every project view has it: project_get_for annotates the caller's role.
    got = project_get_for(user=annotator, slug=project.slug)
    url = reverse("annotation:label", args=[project.slug])
    request = RequestFactory().get(url)
    request.user = annotator
    request.resolver_match = resolve(url)
    template = engines["django"].from_string("{% load project_nav %}{% project_nav project %}")
    with django_assert_num_queries(0):
        html = template.render({"project": got}, request)
    assert [(key, current) for key, _, current in _bar(html)] == [
        ("overview", False),
        ("label", True),
    ]
