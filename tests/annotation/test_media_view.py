"""The private media view: who gets a file (members of a project that uses it), and how
(content type, Range, ETag, X-Accel-Redirect / X-Sendfile)."""

from __future__ import annotations

import hashlib
import importlib
import tempfile
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import FileSystemStorage, Storage, default_storage
from django.db import connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import Resolver404, URLResolver, reverse
from django.urls.resolvers import RegexPattern

from annotation.models import Candidate, Membership, Prompt
from annotation.selectors import media_file_for
from tests.factories import MembershipFactory, UserFactory, media_comparison_make

pytestmark = pytest.mark.django_db


def _url(project, candidate: Candidate) -> str:
    ext = Path(candidate.file.name).suffix
    return reverse("annotation:media", args=[project.slug, f"{candidate.content_hash}{ext}"])


def _bytes(candidate: Candidate) -> bytes:
    with default_storage.open(candidate.file.name, "rb") as fh:
        return fh.read()


def _body(response) -> bytes:
    if response.streaming:
        return b"".join(response.streaming_content)
    return response.content


@pytest.fixture
def image(project) -> Candidate:
    return media_comparison_make(project, kind="image", seed=1).candidate_a


@pytest.fixture
def audio(project) -> Candidate:
    return media_comparison_make(project, kind="audio", seed=2).candidate_b


# ---------------------------------------------------------------- who gets a file


@pytest.mark.parametrize("persona", ["annotator", "reviewer", "admin"])
def test_every_member_gets_the_image_and_the_audio(client, request, persona, image, audio):
    client.force_login(request.getfixturevalue(persona))
    for candidate, content_type in ((image, "image/png"), (audio, "audio/wav")):
        response = client.get(_url(image.prompt.project, candidate))
        assert response.status_code == 200
        assert response["Content-Type"] == content_type
        body = _body(response)
        assert body == _bytes(candidate)
        assert hashlib.sha256(body).hexdigest() == candidate.content_hash
        assert int(response["Content-Length"]) == candidate.size == len(body)


def test_response_is_private_inline_and_can_run_nothing(client, annotator, image):
    client.force_login(annotator)
    response = client.get(_url(image.prompt.project, image))
    _body(response)
    assert response["Accept-Ranges"] == "bytes"
    assert response["ETag"] == f'"{image.content_hash}"'
    assert response["Cache-Control"] == "private, max-age=86400, immutable"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]
    assert "default-src 'none'" in response["Content-Security-Policy"]
    # Blind labelling: the name is the hash, never the import's file name or the model.
    assert response["Content-Disposition"] == f'inline; filename="{image.content_hash}.png"'


def test_prompt_media_is_served_to_members(client, annotator, project, image):
    prompt = Prompt.objects.create(
        project=project, content_hash=uuid.uuid4().hex, text="which edit is better"
    )
    # A file the project uses only as a prompt's image.
    data = media_comparison_make(project, kind="image", seed=7).candidate_a
    Candidate.objects.filter(pk=data.pk).delete()
    Prompt.objects.filter(pk=prompt.pk).update(media=data.file.name, media_content_type="image/png")
    assert not Candidate.objects.filter(file=data.file.name).exists()
    client.force_login(annotator)
    response = client.get(_url(project, data))
    assert response.status_code == 200
    assert _body(response) == _bytes(data)


def test_outsider_gets_404(client, outsider, image):
    client.force_login(outsider)
    assert client.get(_url(image.prompt.project, image)).status_code == 404


def test_annotator_of_another_project_using_the_same_file_gets_it_only_there(
    client, project, other_project, image
):
    # The same content in the other project: one stored file, two projects using it.
    twin = media_comparison_make(other_project, kind="image", seed=1).candidate_a
    assert twin.file.name == image.file.name
    bob = MembershipFactory(
        project=other_project, user=UserFactory(username="bob"), role=Membership.Role.ANNOTATOR
    ).user
    client.force_login(bob)
    assert client.get(_url(project, image)).status_code == 404
    response = client.get(_url(other_project, twin))
    assert response.status_code == 200
    assert _body(response) == _bytes(image)


def test_member_gets_404_for_a_file_only_another_project_uses(
    client, annotator, project, other_project
):
    elsewhere = media_comparison_make(other_project, kind="audio", seed=5).candidate_a
    client.force_login(annotator)
    assert client.get(_url(project, elsewhere)).status_code == 404


def test_anonymous_user_is_sent_to_login(client, image):
    response = client.get(_url(image.prompt.project, image))
    assert response.status_code == 302
    assert response.url.startswith("/accounts/login/")


@pytest.mark.parametrize(
    "name",
    [
        "0" * 64 + ".png",  # unknown hash
        "{hash}.jpg",  # right hash, wrong extension
        "{hash}.exe",  # not a media type
        "{hash}",  # no extension
        "{HASH}.png",  # upper case: not how names are written
        "..%2F..%2Fsettings.py",
        "{hash}.png.png",
    ],
)
def test_bad_or_unknown_names_are_404(client, annotator, project, image, name):
    client.force_login(annotator)
    name = name.format(hash=image.content_hash, HASH=image.content_hash.upper())
    url = reverse("annotation:media", args=[project.slug, "x"]).removesuffix("x") + name
    assert client.get(url).status_code == 404


def test_media_root_has_no_public_url(client, admin, image):
    client.force_login(admin)
    assert not settings.DEBUG
    for prefix in ("/media/", f"/{settings.MEDIA_URL.strip('/')}/"):
        assert client.get(f"{prefix}{image.file.name}").status_code == 404


def test_no_url_serves_media_root_even_in_debug(image):
    # `static(settings.MEDIA_URL, ...)` only adds its route when DEBUG is on at import:
    # build the URLconf afresh in DEBUG and check nothing answers under MEDIA_URL.
    import config.urls

    with override_settings(DEBUG=True):
        try:
            fresh = importlib.reload(config.urls)
            resolver = URLResolver(RegexPattern(r"^/"), fresh)
            with pytest.raises(Resolver404):
                resolver.resolve(f"/{settings.MEDIA_URL.strip('/')}/{image.file.name}")
        finally:
            importlib.reload(config.urls)


def test_post_is_refused(client, annotator, image):
    client.force_login(annotator)
    assert client.post(_url(image.prompt.project, image)).status_code == 405


# ---------------------------------------------------------------- Range, ETag, HEAD


def test_range_first_bytes(client, annotator, audio):
    client.force_login(annotator)
    response = client.get(_url(audio.prompt.project, audio), headers={"Range": "bytes=0-99"})
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes 0-99/{audio.size}"
    assert response["Content-Length"] == "100"
    assert response["Content-Type"] == "audio/wav"
    assert _body(response) == _bytes(audio)[:100]


def test_range_open_ended(client, annotator, audio):
    client.force_login(annotator)
    response = client.get(_url(audio.prompt.project, audio), headers={"Range": "bytes=1000-"})
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes 1000-{audio.size - 1}/{audio.size}"
    assert _body(response) == _bytes(audio)[1000:]


def test_range_suffix(client, annotator, audio):
    client.force_login(annotator)
    response = client.get(_url(audio.prompt.project, audio), headers={"Range": "bytes=-500"})
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes {audio.size - 500}-{audio.size - 1}/{audio.size}"
    assert _body(response) == _bytes(audio)[-500:]


def test_range_end_past_the_file_is_clamped(client, annotator, audio):
    client.force_login(annotator)
    response = client.get(
        _url(audio.prompt.project, audio), headers={"Range": f"bytes=10-{audio.size + 999}"}
    )
    assert response.status_code == 206
    assert _body(response) == _bytes(audio)[10:]


@pytest.mark.parametrize("header", ["bytes={size}-", "bytes={size}-{more}", "bytes=-0"])
def test_unsatisfiable_range_is_416(client, annotator, audio, header):
    client.force_login(annotator)
    header = header.format(size=audio.size, more=audio.size + 10)
    response = client.get(_url(audio.prompt.project, audio), headers={"Range": header})
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{audio.size}"


@pytest.mark.parametrize("header", ["bytes=0-9,20-29", "items=0-9", "bytes=9-0"])
def test_several_or_malformed_ranges_get_the_whole_file(client, annotator, audio, header):
    client.force_login(annotator)
    response = client.get(_url(audio.prompt.project, audio), headers={"Range": header})
    assert response.status_code == 200
    assert _body(response) == _bytes(audio)


def test_if_range_with_another_etag_gets_the_whole_file(client, annotator, audio):
    client.force_login(annotator)
    url = _url(audio.prompt.project, audio)
    stale = client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"old"'})
    assert stale.status_code == 200
    assert _body(stale) == _bytes(audio)
    fresh = client.get(url, headers={"Range": "bytes=0-9", "If-Range": f'"{audio.content_hash}"'})
    assert fresh.status_code == 206
    assert _body(fresh) == _bytes(audio)[:10]


def test_if_none_match_gives_304(client, annotator, image):
    client.force_login(annotator)
    url = _url(image.prompt.project, image)
    etag = client.get(url)["ETag"]
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        response = client.get(url, headers={"If-None-Match": header})
        assert response.status_code == 304, header
        assert response["ETag"] == etag
        assert response["Cache-Control"] == "private, max-age=86400, immutable"
        assert response.content == b""
    assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200


def test_if_none_match_does_not_skip_the_permission_check(client, outsider, image):
    client.force_login(outsider)
    response = client.get(
        _url(image.prompt.project, image), headers={"If-None-Match": f'"{image.content_hash}"'}
    )
    assert response.status_code == 404


def test_head_gives_headers_without_a_body(client, annotator, audio):
    client.force_login(annotator)
    url = _url(audio.prompt.project, audio)
    response = client.head(url)
    assert response.status_code == 200
    assert response["Content-Length"] == str(audio.size)
    assert response["Content-Type"] == "audio/wav"
    assert response["Accept-Ranges"] == "bytes"
    assert _body(response) == b""
    ranged = client.head(url, headers={"Range": "bytes=0-9"})
    assert ranged.status_code == 206
    assert ranged["Content-Length"] == "10"
    assert ranged["Content-Range"] == f"bytes 0-9/{audio.size}"


class PathlessStorage(Storage):
    """Object storage (django-storages' S3 and the like): files, but no local paths. Kept
    in a temporary folder behind the Storage API only."""

    def __init__(self) -> None:
        self._files = FileSystemStorage(location=tempfile.mkdtemp(prefix="pathless-"))

    def _open(self, name: str, mode: str = "rb"):
        return self._files.open(name, mode)

    def _save(self, name: str, content) -> str:
        return self._files.save(name, content)

    def exists(self, name: str) -> bool:
        return self._files.exists(name)

    def size(self, name: str) -> int:
        return self._files.size(name)

    def delete(self, name: str) -> None:
        self._files.delete(name)


PATHLESS = {"BACKEND": f"{__name__}.PathlessStorage"}


def test_object_storage_without_paths_is_streamed(client, annotator, project):
    with override_settings(STORAGES={**settings.STORAGES, "default": PATHLESS}):
        audio = media_comparison_make(project, kind="audio", seed=3).candidate_a
        client.force_login(annotator)
        response = client.get(_url(project, audio), headers={"Range": "bytes=-100"})
        assert response.status_code == 206
        assert _body(response) == _bytes(audio)[-100:]
        whole = client.get(_url(project, audio))
        assert _body(whole) == _bytes(audio)


def test_x_sendfile_without_local_paths_is_a_configuration_error(client, annotator, project):
    with override_settings(
        STORAGES={**settings.STORAGES, "default": PATHLESS}, MEDIA_SERVE="x-sendfile"
    ):
        audio = media_comparison_make(project, kind="audio", seed=3).candidate_a
        client.force_login(annotator)
        with pytest.raises(ImproperlyConfigured, match="x-sendfile"):
            client.get(_url(project, audio))


def test_file_missing_from_storage_is_404(client, annotator, image):
    default_storage.delete(image.file.name)
    client.force_login(annotator)
    assert client.get(_url(image.prompt.project, image)).status_code == 404


# ---------------------------------------------------------------- hand-over to the web server


@override_settings(MEDIA_SERVE="x-accel-redirect", MEDIA_ACCEL_PREFIX="/protected-media/")
def test_x_accel_redirect_hands_the_file_to_nginx(client, annotator, outsider, audio):
    url = _url(audio.prompt.project, audio)
    client.force_login(annotator)
    response = client.get(url)
    assert response.status_code == 200
    assert response["X-Accel-Redirect"] == f"/protected-media/{audio.file.name}"
    assert response["Content-Type"] == "audio/wav"
    assert response["Cache-Control"] == "private, max-age=86400, immutable"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response.content == b""
    client.force_login(outsider)
    response = client.get(url)
    assert response.status_code == 404
    assert "X-Accel-Redirect" not in response


@override_settings(MEDIA_SERVE="x-sendfile")
def test_x_sendfile_hands_the_absolute_path_to_apache(client, annotator, outsider, image):
    url = _url(image.prompt.project, image)
    client.force_login(annotator)
    response = client.get(url)
    assert response.status_code == 200
    path = Path(response["X-Sendfile"])
    assert path.is_absolute()
    assert path == Path(settings.MEDIA_ROOT, image.file.name)
    assert path.read_bytes() == _bytes(image)
    assert response["Content-Type"] == "image/png"
    assert response.content == b""
    client.force_login(outsider)
    response = client.get(url)
    assert response.status_code == 404
    assert "X-Sendfile" not in response


# ---------------------------------------------------------------- cost


def test_look_up_is_one_query(django_assert_num_queries, project, image):
    name = f"{image.content_hash}.png"
    with django_assert_num_queries(1):
        found = media_file_for(project=project, name=name)
    assert found.name == image.file.name
    assert found.content_type == "image/png"


def test_request_costs_session_user_project_and_look_up(
    client, django_assert_max_num_queries, annotator, image
):
    client.force_login(annotator)
    url = _url(image.prompt.project, image)
    with django_assert_max_num_queries(4):
        _body(client.get(url))


def test_look_up_uses_the_partial_indexes(project, image):
    """Small test tables would be scanned anyway; with scans made dear, the plan of the
    selector's own query must still reach both indexes (so they match its condition)."""
    with CaptureQueriesContext(connection) as queries:
        media_file_for(project=project, name=f"{image.content_hash}.png")
    (sql,) = [q["sql"] for q in queries.captured_queries]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}")
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "candidate_file_idx" in plan, plan
    assert "prompt_media_idx" in plan, plan
