"""The project navigation bar: which pages of a project a role may open, in one place.

Every project page shows the same bar (core/templates/core/_project_nav.html, through the
`project_nav` tag). Each entry names the roles its view asks for in `project_view(roles=...)`,
so that the bar never shows a link that answers 404; tests/core/test_nav.py checks every
link of the bar for every role against the views.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.urls import reverse

from core.roles import ADMIN, MEMBERS, REVIEWERS


@dataclass(frozen=True, slots=True)
class NavItem:
    key: str
    label: str
    url_name: str
    # The roles the page's view admits; None: any member (core.roles.MEMBERS).
    roles: tuple[str, ...] | None
    # Other URL names that belong to this entry (a run's page under Models, ...): the bar
    # marks the entry as the current page on them too.
    also: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NavLink:
    key: str
    label: str
    url: str
    current: bool


# The dashboard hook: issue 13's project dashboard has no URL yet. When it has one, add
# NavItem("dashboard", "Dashboard", "<app>:dashboard", REVIEWERS) at the front of NAV_ITEMS;
# annotators must never see it (blind labelling).
NAV_ITEMS: tuple[NavItem, ...] = (
    NavItem("overview", "Overview", "annotation:project", MEMBERS),
    NavItem("label", "Label", "annotation:label", MEMBERS),
    NavItem("review", "Review", "annotation:review", REVIEWERS),
    NavItem("models", "Models", "scoring:models", REVIEWERS, also=("scoring:run",)),
    NavItem("curation", "Curation", "curation:curation", REVIEWERS, also=("curation:annotators",)),
    NavItem("routing", "Routing", "routing:page", ADMIN),
    NavItem("ai-annotators", "AI annotators", "judges:annotators", ADMIN, also=("judges:edit",)),
    NavItem("members", "Members", "annotation:members", ADMIN),
    NavItem("settings", "Settings", "annotation:settings", ADMIN),
    NavItem(
        "import-export",
        "Import / export",
        "annotation:import",
        ADMIN,
        also=("annotation:import_job",),
    ),
)


def project_nav_links(*, project, role: str | None, current: str | None) -> list[NavLink]:
    """The bar's links for a member with `role` on the page whose URL name is `current`
    ("scoring:models"): only the pages the role may open, the current one marked."""
    if role is None:
        return []
    return [
        NavLink(
            key=item.key,
            label=item.label,
            url=reverse(item.url_name, args=[project.slug]),
            current=current is not None and current in (item.url_name, *item.also),
        )
        for item in NAV_ITEMS
        if item.roles is None or role in item.roles
    ]
