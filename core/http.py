"""Serving a stored file that only some users may fetch: Range, ETag and the hand-over to
the web server (X-Accel-Redirect for nginx, X-Sendfile for Apache/lighttpd).

The caller checks permission first; everything here is about the bytes. A file is read in
blocks from the storage (never whole into memory), so the same code serves the local
filesystem and object storage (django-storages), where there is no local path.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import Storage
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseNotModified,
    StreamingHttpResponse,
)
from django.utils.http import parse_etags

BLOCK_SIZE = 64 * 1024
SERVE_MODES = ("django", "x-accel-redirect", "x-sendfile")

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class RangeNotSatisfiable(Exception):
    """A well-formed Range that asks for nothing inside the file: 416."""


@dataclass(frozen=True, slots=True)
class ByteRange:
    start: int
    end: int  # inclusive, as in Content-Range

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def range_parse(header: str | None, size: int) -> ByteRange | None:
    """The one byte range a `Range` header asks for, clamped to the file; None for the whole
    file (no header, a syntax we ignore as RFC 9110 allows, or several ranges, which we
    answer with the whole file rather than multipart). RangeNotSatisfiable when it starts
    at or past the end, or is an empty suffix."""
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip().replace(" ", ""))
    if match is None:
        return None
    first, last = match.groups()
    if not first:
        if not last:
            return None  # "bytes=-": not a range
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable
        return ByteRange(max(size - suffix, 0), size - 1)
    start = int(first)
    if last and int(last) < start:
        return None  # invalid: ignore the header
    if start >= size:
        raise RangeNotSatisfiable
    end = min(int(last), size - 1) if last else size - 1
    return ByteRange(start, end)


def _etag_matches(request: HttpRequest, etag: str) -> bool:
    """If-None-Match, with the weak comparison RFC 9110 asks for on GET and HEAD."""
    header = request.headers.get("If-None-Match")
    if not header:
        return False
    tags = [tag.removeprefix("W/") for tag in parse_etags(header)]
    return "*" in tags or etag in tags


def _if_range_passes(request: HttpRequest, etag: str) -> bool:
    """A Range with an If-Range naming another version is answered with the whole file."""
    header = request.headers.get("If-Range")
    return not header or header.strip() == etag


def _read(storage: Storage, name: str, span: ByteRange) -> Iterator[bytes]:
    # A generator: Django closes it (and so the file) even when the client goes away.
    with storage.open(name, "rb") as fh:
        fh.seek(span.start)
        left = span.length
        while left > 0:
            block = fh.read(min(BLOCK_SIZE, left))
            if not block:
                break
            left -= len(block)
            yield block


def stored_file_response(
    request: HttpRequest,
    *,
    storage: Storage,
    name: str,
    content_type: str,
    etag: str,
    filename: str,
    mode: str = "django",
    accel_prefix: str = "",
) -> HttpResponseBase:
    """The response that hands `name` of `storage` over, for a caller that has checked the
    user may have it. `etag` is a quoted entity tag: the content must never change under
    the same name (files named by their hash). `mode`:
      - "django": streams it, with Range (one range -> 206, unsatisfiable -> 416) and
        If-None-Match -> 304;
      - "x-accel-redirect": an empty answer that tells nginx to serve
        `accel_prefix + name` from an `internal` location;
      - "x-sendfile": an empty answer that tells Apache (mod_xsendfile) or lighttpd to
        serve the file's absolute path (a storage with local paths only).
    Headers the caller adds afterwards (cache, security) reach every status."""
    if mode not in SERVE_MODES:
        raise ImproperlyConfigured(f"file serving mode {mode!r}: use one of {SERVE_MODES}")
    if _etag_matches(request, etag):
        response: HttpResponseBase = HttpResponseNotModified()
        response.headers["ETag"] = etag
        return response
    if mode == "x-accel-redirect":
        response = HttpResponse(content_type=content_type)
        response.headers["X-Accel-Redirect"] = f"{accel_prefix}{name}"
    elif mode == "x-sendfile":
        try:
            path = storage.path(name)
        except NotImplementedError as exc:
            raise ImproperlyConfigured(
                "x-sendfile needs a storage with local paths; use django mode for object storage"
            ) from exc
        response = HttpResponse(content_type=content_type)
        response.headers["X-Sendfile"] = path
    else:
        response = _streamed(
            request, storage=storage, name=name, content_type=content_type, etag=etag
        )
    response.headers["ETag"] = etag
    response.headers["Content-Disposition"] = f'inline; filename="{filename}"'
    return response


def _streamed(
    request: HttpRequest, *, storage: Storage, name: str, content_type: str, etag: str
) -> HttpResponseBase:
    try:
        size = storage.size(name)
    except OSError as exc:  # FileNotFoundError and the like
        # The database names a file the storage lacks: nothing to serve.
        raise Http404("No such file.") from exc
    try:
        wanted = request.headers.get("Range") if _if_range_passes(request, etag) else None
        span = range_parse(wanted, size)
    except RangeNotSatisfiable:
        response = HttpResponse(status=416, content_type=content_type)
        response.headers["Content-Range"] = f"bytes */{size}"
        response.headers["Accept-Ranges"] = "bytes"
        return response
    if request.method == "HEAD":
        # Headers only: the file is not even opened.
        response = HttpResponse(content_type=content_type)
        status, length = (206, span.length) if span else (200, size)
        response.status_code = status
    elif span is None:
        response = FileResponse(storage.open(name, "rb"), content_type=content_type)
        response.block_size = BLOCK_SIZE  # read lazily, block by block
        length = size
    else:
        response = StreamingHttpResponse(
            _read(storage, name, span), status=206, content_type=content_type
        )
        length = span.length
    if span is not None:
        response.headers["Content-Range"] = f"bytes {span.start}-{span.end}/{size}"
    response.headers["Content-Length"] = str(length)
    response.headers["Accept-Ranges"] = "bytes"
    return response
