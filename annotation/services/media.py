"""Media files in storage: saved once by content hash through Django's storage API.

The storage is Django's default one (the filesystem under MEDIA_ROOT unless a deployment
sets STORAGES["default"], e.g. django-storages' S3 backend: docs/media.md). Names come from
annotation.media.blob_name, so a file used by many candidates or projects is stored once.
"""

from __future__ import annotations

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from annotation.media import Limits, MediaInfo


def media_limits() -> Limits:
    """The limits an imported file is checked against, from the settings."""
    return Limits(
        image_max_bytes=settings.MEDIA_IMAGE_MAX_BYTES,
        image_max_side=settings.MEDIA_IMAGE_MAX_SIDE,
        image_max_pixels=settings.MEDIA_IMAGE_MAX_PIXELS,
        audio_max_bytes=settings.MEDIA_AUDIO_MAX_BYTES,
        audio_max_seconds=settings.MEDIA_AUDIO_MAX_SECONDS,
    )


def media_save(*, data: bytes, info: MediaInfo) -> bool:
    """Store `data` under its content name; True if this call wrote it (False: it was
    there already). The caller that wrote a file deletes it if its import rolls back."""
    name = info.name
    if default_storage.exists(name):
        return False
    saved = default_storage.save(name, ContentFile(data))
    if saved != name:
        # Another process stored the same content meanwhile: keep theirs, drop our copy.
        default_storage.delete(saved)
        return False
    return True


def media_delete(*, names: list[str]) -> None:
    """Delete stored files (an import that rolled back removes what it wrote)."""
    for name in names:
        default_storage.delete(name)
