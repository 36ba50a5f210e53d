"""The private media view: a project's images and audio, to its members only."""

from __future__ import annotations

from django.conf import settings
from django.core.files.storage import default_storage
from django.http import HttpRequest, HttpResponseBase
from django.views.decorators.http import require_safe

from annotation.selectors import media_file_for
from core.http import stored_file_response
from core.views import project_view

# The file under a name never changes (the name is its hash): a member's browser keeps it
# for a day without asking; "private" keeps shared caches out.
CACHE_CONTROL = "private, max-age=86400, immutable"
# Opened on its own (not in an <img> or <audio>), a file still can never run script.
CONTENT_SECURITY_POLICY = "default-src 'none'; sandbox"


@project_view()
@require_safe
def media(request: HttpRequest, project, name: str) -> HttpResponseBase:
    """GET/HEAD `<sha256><ext>` for any member of a project that uses the file; 404 for
    everyone and everything else. Streamed with Range support for audio seeking, or handed
    to the web server (settings.MEDIA_SERVE); the check is the same in every mode."""
    file = media_file_for(project=project, name=name)
    response = stored_file_response(
        request,
        storage=default_storage,
        name=file.name,
        content_type=file.content_type,
        etag=f'"{file.hash}"',
        filename=file.filename,
        mode=settings.MEDIA_SERVE,
        accel_prefix=settings.MEDIA_ACCEL_PREFIX,
    )
    response.headers["Cache-Control"] = CACHE_CONTROL
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Cross-Origin-Resource-Policy"] = "same-origin"
    return response
