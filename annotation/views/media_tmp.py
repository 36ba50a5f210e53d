"""TEMPORARY stand-in for the media view (part "media view" of issue 12 builds the real
one under the same URL name, `annotation:media`); the labelling pages and their browser
test need the URL to work meanwhile. Replaced at merge.

Member-only (project_view), and only a file that this project uses; a single `bytes=a-b`
Range so that audio can seek.
"""

from __future__ import annotations

import re

from django.core.files.storage import default_storage
from django.db.models import Q
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from annotation.media import CONTENT_TYPES, blob_name
from annotation.models import Candidate, Prompt
from core.roles import MEMBERS
from core.views import project_view

NAME = re.compile(r"^([0-9a-f]{64})(\.[a-z0-9]{1,5})$")
RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@project_view(roles=MEMBERS)
@require_GET
def media(request: HttpRequest, project, name: str) -> HttpResponse:
    match = NAME.match(name)
    if not match:
        raise Http404("No such file.")
    stored = blob_name(match[1], match[2])
    used = (
        Candidate.objects.filter(prompt__project=project, file=stored).exists()
        or Prompt.objects.filter(Q(project=project) & Q(media=stored)).exists()
    )
    if not used or not default_storage.exists(stored):
        raise Http404("No such file.")
    content_type = CONTENT_TYPES.get(match[2], "application/octet-stream")
    size = default_storage.size(stored)
    wanted = RANGE.match(request.headers.get("Range", ""))
    if wanted and (wanted[1] or wanted[2]):
        if wanted[1]:
            start, end = int(wanted[1]), int(wanted[2] or size - 1)
        else:
            start, end = max(0, size - int(wanted[2])), size - 1
        end = min(end, size - 1)
        if start > end:
            response = HttpResponse(status=416)
            response["Content-Range"] = f"bytes */{size}"
            return response
        with default_storage.open(stored, "rb") as f:
            f.seek(start)
            data = f.read(end - start + 1)
        response = HttpResponse(data, status=206, content_type=content_type)
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
    else:
        response = FileResponse(default_storage.open(stored, "rb"), content_type=content_type)
    response["Accept-Ranges"] = "bytes"
    response["Cache-Control"] = "private, max-age=3600"
    response["X-Content-Type-Options"] = "nosniff"
    return response
