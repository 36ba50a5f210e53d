from django.apps import AppConfig


class AnnotationConfig(AppConfig):
    name = "annotation"
    verbose_name = "Annotation"

    def ready(self) -> None:
        # core's project_view decorator resolves projects with this app's access rule.
        from annotation.selectors import project_get_for, project_site_summary
        from core.selectors import site_projects_set
        from core.views import project_getter_set

        project_getter_set(project_get_for)
        # The site dashboard (core) lists every project through this app's summary.
        site_projects_set(project_site_summary)
