from __future__ import annotations

from django import template

from core.nav import project_nav_links
from core.roles import member_role

register = template.Library()


@register.inclusion_tag("core/_project_nav.html", takes_context=True)
def project_nav(context: template.Context, project) -> dict:
    """`{% project_nav project %}`: the project's navigation bar for the request's user."""
    request = context["request"]
    match = getattr(request, "resolver_match", None)
    role = member_role(user=request.user, project=project)
    return {
        "project": project,
        "links": project_nav_links(
            project=project, role=role, current=match.view_name if match else None
        ),
    }
