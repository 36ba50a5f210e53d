"""Importing image and audio pairs: archives, manifests beside their files, HF datasets'
Parquet; and every refusal, each naming the row and the file and leaving nothing behind
(no row, no stored file, no temporary file)."""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
import time
import zipfile
from pathlib import Path

import orjson
import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from annotation.media import blob_name
from annotation.models import Candidate, Comparison, ImportJob, Prompt, Ranking
from annotation.services.importing import (
    ImportRejected,
    import_job_cancel,
    import_job_execute,
    pairs_import,
)
from tests.factories import PASSWORD
from tests.media_samples import (
    archive,
    audio_bytes,
    audio_pairs_archive,
    image_bytes,
    image_pairs_archive,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media_root(request, settings, tmp_path, monkeypatch) -> Path:
    """A MEDIA_ROOT and a temporary folder of the test's own, to see what an import left
    (not for the worker's test: the worker process has the session's MEDIA_ROOT)."""
    if request.node.get_closest_marker("worker"):
        return Path(settings.MEDIA_ROOT)
    settings.MEDIA_ROOT = str(tmp_path / "media")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    return tmp_path / "media"


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _import(project, path: Path, **kw):
    return pairs_import(project=project, path=path, source_name=f"import:{path.name}", **kw)


def _nothing_written(tmp_path: Path) -> None:
    assert not Prompt.objects.exists()
    assert not Candidate.objects.exists()
    assert not Comparison.objects.exists()
    media = tmp_path / "media"
    assert not media.exists() or _files(media) == []
    assert list((tmp_path / "tmp").iterdir()) == []


def _refused(project, path: Path, **kw) -> list[str]:
    with pytest.raises(ImportRejected) as exc:
        _import(project, path, **kw)
    return exc.value.errors


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- what is imported


def test_image_trl_archive_stores_candidates_and_files_once(project, tmp_path, media_root):
    a, b = image_bytes(1), image_bytes(2, fmt="JPEG")
    path = archive(
        tmp_path / "imgs.zip",
        [
            {"prompt": "a fox", "chosen": {"image": "img/a.png", "alt": "a red fox"},
             "rejected": {"image": "./img/b.jpg"}, "id": "r1", "margin": 1.5},
            # The same file again, in another pair: stored once.
            {"prompt": "a fox at night", "chosen": {"image": "img/a.png"},
             "rejected": {"image": "img/b.jpg"}},
        ],
        {"img/a.png": a, "img/b.jpg": b},
    )  # fmt: skip

    result = _import(project, path)

    assert (result.comparisons_created, result.candidates_created, result.files_stored) == (2, 4, 2)
    assert result.message.startswith(
        "imported 2 comparisons (2 prompts, 4 candidates, 2 new files)"
    )
    fox = Candidate.objects.get(prompt__text="a fox", content_hash=_sha(a))
    assert (fox.kind, fox.file.name, fox.content_type, fox.size, fox.metadata, fox.text) == (
        "image", blob_name(_sha(a), ".png"), "image/png", len(a), {"alt": "a red fox"}, "",
    )  # fmt: skip
    jpeg = Candidate.objects.get(prompt__text="a fox", content_hash=_sha(b))
    assert (jpeg.file.name, jpeg.content_type, jpeg.metadata) == (
        blob_name(_sha(b), ".jpg"), "image/jpeg", {},
    )  # fmt: skip
    assert _files(media_root) == sorted([blob_name(_sha(a), ".png"), blob_name(_sha(b), ".jpg")])
    assert default_storage.open(fox.file.name).read() == a
    comparison = Comparison.objects.get(external_id="r1")
    assert (comparison.status, comparison.label_margin) == ("labelled", 1.5)
    chosen = comparison.candidate_a if comparison.label == "a" else comparison.candidate_b
    assert chosen.content_hash == _sha(a)
    assert list((tmp_path / "tmp").iterdir()) == []


def test_importing_the_archive_again_adds_nothing(project, tmp_path, media_root):
    path = image_pairs_archive(tmp_path / "imgs.zip", n=3)
    _import(project, path)

    again = _import(project, path)

    assert (again.comparisons_created, again.comparisons_existing, again.files_stored) == (0, 3, 0)
    assert again.message == "nothing new: all 3 comparisons in the file were already imported"
    assert (Candidate.objects.count(), len(_files(media_root))) == (6, 6)


def test_audio_archive_imports(project, tmp_path, media_root):
    result = _import(project, audio_pairs_archive(tmp_path / "wavs.zip", n=4))

    assert (result.comparisons_created, result.files_stored) == (4, 8)
    kinds = set(Candidate.objects.values_list("kind", "content_type"))
    assert kinds == {("audio", "audio/wav")}
    assert all(name.endswith(".wav") for name in _files(media_root))


def test_csv_manifest_names_files_in_columns(project, tmp_path, media_root):
    rows = [
        {"prompt": f"p{i}", "chosen": "", "chosen_image": f"img/{i}a.png",
         "chosen_alt": f"alt {i}", "rejected_image": f"img/{i}b.webp"}
        for i in range(3)
    ]  # fmt: skip
    files = {f"img/{i}a.png": image_bytes(10 + i) for i in range(3)}
    files |= {f"img/{i}b.webp": image_bytes(20 + i, fmt="WEBP") for i in range(3)}

    result = _import(project, archive(tmp_path / "c.zip", rows, files, manifest="pairs.csv"))

    assert result.comparisons_created == 3
    assert Candidate.objects.filter(kind="image", content_type="image/webp").count() == 3
    alts = sorted(c.metadata["alt"] for c in Candidate.objects.filter(content_type="image/png"))
    assert alts == ["alt 0", "alt 1", "alt 2"]


def test_csv_audio_columns_and_a_prompt_image(project, tmp_path):
    rows = [{"prompt": "read this sign aloud", "prompt_image": "sign.png",
             "chosen_audio": "wav/a.flac", "rejected_audio": "wav/b.ogg"}]  # fmt: skip
    files = {
        "sign.png": image_bytes(80),
        "wav/a.flac": audio_bytes(81, fmt="FLAC"),
        "wav/b.ogg": audio_bytes(82, fmt="OGG"),
    }

    _import(project, archive(tmp_path / "a.zip", rows, files, manifest="pairs.csv"))

    prompt = Prompt.objects.get()
    assert (prompt.text, prompt.media_content_type) == ("read this sign aloud", "image/png")
    assert set(Candidate.objects.values_list("kind", "content_type")) == {
        ("audio", "audio/flac"),
        ("audio", "audio/ogg"),
    }


def test_a_text_only_archive_imports_as_text(project, tmp_path, media_root):
    rows = [{"prompt": "2+2?", "chosen": "4", "rejected": "5"}]
    result = _import(project, archive(tmp_path / "t.zip", rows, {}))
    assert (result.comparisons_created, result.files_stored) == (1, 0)
    assert set(Candidate.objects.values_list("kind", flat=True)) == {"text"}
    assert not media_root.exists() or _files(media_root) == []


def test_ranked_rows_with_n_images_make_a_ranking_and_its_pairs(project, tmp_path):
    files = {f"img/{i}.png": image_bytes(30 + i) for i in range(4)}
    rows = [
        {"prompt": "best picture of a cat",
         "responses": [{"image": f"img/{i}.png", "model": f"m{i}", "rank": i + 1} for i in range(4)]},
    ]  # fmt: skip

    result = _import(project, archive(tmp_path / "r.zip", rows, files))

    assert (result.comparisons_created, result.candidates_created) == (6, 4)
    ranking = Ranking.objects.get()
    assert ranking.candidates.filter(kind="image").count() == 4
    best = Candidate.objects.get(source_model="m0")
    assert best.content_hash == _sha(files["img/0.png"])
    # rank 1 beats every other
    for c in Comparison.objects.filter(candidate_a=best):
        assert c.label == "a"
    for c in Comparison.objects.filter(candidate_b=best):
        assert c.label == "b"


def test_a_prompt_may_carry_its_own_image(project, tmp_path, media_root):
    src, a, b = image_bytes(40), image_bytes(41), image_bytes(42)
    rows = [
        {"prompt": {"text": "which edit of this photo is better?", "image": "src.png",
                    "alt": "the original"},
         "chosen": {"image": "a.png"}, "rejected": {"image": "b.png"}},
    ]  # fmt: skip

    _import(project, archive(tmp_path / "p.zip", rows, {"src.png": src, "a.png": a, "b.png": b}))

    prompt = Prompt.objects.get()
    text = "which edit of this photo is better?"
    assert (prompt.text, prompt.media.name, prompt.media_content_type, prompt.metadata) == (
        text, blob_name(_sha(src), ".png"), "image/png", {"media_alt": "the original"},
    )  # fmt: skip
    assert prompt.content_hash == _sha((text + "\x00" + _sha(src)).encode())
    assert len(_files(media_root)) == 3


def test_hf_datasets_parquet_needs_no_archive(project, tmp_path, media_root):
    from datasets import Audio, Dataset, Features, Image, Value

    images = [image_bytes(50 + i) for i in range(4)]
    sounds = [audio_bytes(60 + i) for i in range(2)]
    ds = Dataset.from_dict(
        {
            "prompt": ["p0", "p1"],
            "chosen": [{"bytes": images[0], "path": "0.png"}, {"bytes": images[2], "path": None}],
            "rejected": [{"bytes": images[1], "path": "1.png"}, {"bytes": images[3], "path": None}],
        },
        features=Features({"prompt": Value("string"), "chosen": Image(), "rejected": Image()}),
    )
    ds.to_parquet(tmp_path / "pick.parquet")
    audio = Dataset.from_dict(
        {"prompt": ["say hi"], "chosen": [{"bytes": sounds[0], "path": "a.wav"}],
         "rejected": [{"bytes": sounds[1], "path": "b.wav"}]},
        features=Features({"prompt": Value("string"), "chosen": Audio(), "rejected": Audio()}),
    )  # fmt: skip
    audio.to_parquet(tmp_path / "tts.parquet")

    result = _import(project, tmp_path / "pick.parquet")
    sound = _import(project, tmp_path / "tts.parquet")

    assert (result.comparisons_created, result.files_stored) == (2, 4)
    assert (sound.comparisons_created, sound.files_stored) == (1, 2)
    assert sorted(Candidate.objects.values_list("kind", flat=True)) == ["audio"] * 2 + ["image"] * 4
    assert sorted(_files(media_root)) == sorted(
        [blob_name(_sha(d), ".png") for d in images] + [blob_name(_sha(d), ".wav") for d in sounds]
    )


def test_command_imports_a_manifest_with_files_beside_it(tmp_path, media_root, capsys):
    folder = tmp_path / "set"
    (folder / "img").mkdir(parents=True)
    for i in range(4):
        (folder / "img" / f"{i}.png").write_bytes(image_bytes(70 + i))
    rows = [
        {"prompt": f"p{i}", "chosen": {"image": f"img/{2 * i}.png"},
         "rejected": {"image": f"img/{2 * i + 1}.png"}}
        for i in range(2)
    ]  # fmt: skip
    (folder / "pairs.jsonl").write_bytes(b"\n".join(orjson.dumps(r) for r in rows))

    call_command("import_pairs", str(folder / "pairs.jsonl"), project="cli", create=True)
    # A folder holding one manifest works too; everything is there already.
    call_command("import_pairs", str(folder), project="cli")

    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("imported 2 comparisons (2 prompts, 4 candidates, 4 new files)")
    assert out[1] == "nothing new: all 2 comparisons in the file were already imported"
    assert Comparison.objects.filter(project__slug="cli").count() == 2
    assert len(_files(media_root)) == 4


def test_command_imports_an_archive(tmp_path, media_root, capsys):
    call_command(
        "import_pairs", str(image_pairs_archive(tmp_path / "a.zip", n=2)), project="z", create=True
    )
    assert capsys.readouterr().out.startswith("imported 2 comparisons")
    assert Candidate.objects.filter(prompt__project__slug="z", kind="image").count() == 4


# ---------------------------------------------------------------- refusals


def _pair(a: str = "img/a.png", b: str = "img/b.png", kind: str = "image") -> dict:
    return {"prompt": "p", "chosen": {kind: a}, "rejected": {kind: b}}


OK_FILES = {"img/a.png": image_bytes(1), "img/b.png": image_bytes(2)}


def test_a_missing_file_is_refused(project, tmp_path):
    rows = [_pair(), _pair("img/a.png", "img/nope.png")]
    errors = _refused(project, archive(tmp_path / "m.zip", rows, OK_FILES))
    assert errors == ["line 2, field 'rejected': file 'img/nope.png' is not in the archive"]
    _nothing_written(tmp_path)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../secret.png", "has '..' in its path"),
        ("img/../../secret.png", "has '..' in its path"),
        ("/etc/passwd", "is an absolute path"),
        ("C:\\secret.png", "is an absolute path"),
    ],
)
def test_a_path_leaving_the_archive_is_refused(project, tmp_path, name, why):
    errors = _refused(project, archive(tmp_path / "m.zip", [_pair(b=name)], OK_FILES))
    assert len(errors) == 1
    assert errors[0].startswith(f"line 1, field 'rejected.image': file '{name}' {why}")
    _nothing_written(tmp_path)


def test_a_symlink_entry_is_refused(project, tmp_path):
    path = archive(tmp_path / "s.zip", [_pair(), _pair("img/a.png", "img/link.png")], OK_FILES)
    with zipfile.ZipFile(path, "a") as zf:
        info = zipfile.ZipInfo("img/link.png")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
        unused = zipfile.ZipInfo("img/unused.png")
        unused.create_system = 3
        unused.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(unused, "/etc/shadow")

    errors = _refused(project, path)

    assert errors == [
        "line 2, field 'rejected': file 'img/link.png' is a symbolic link in the archive; refused",
        "archive member 'img/unused.png' is a symbolic link in the archive; refused",
    ]
    _nothing_written(tmp_path)


def test_an_archive_over_its_uncompressed_cap_is_refused_before_reading(
    project, tmp_path, settings
):
    settings.IMPORT_ARCHIVE_MAX_BYTES = 100
    path = archive(tmp_path / "big.zip", [_pair()], OK_FILES)

    with pytest.raises(ImportRejected) as exc:
        _import(project, path)

    assert exc.value.message.startswith("the archive is refused: the archive holds ")
    assert "over the 100-byte limit (IMPORT_ARCHIVE_MAX_BYTES)" in exc.value.errors[0]
    _nothing_written(tmp_path)


def test_a_member_expanding_over_the_ratio_is_refused(project, tmp_path):
    files = {**OK_FILES, "img/bomb.png": bytes(4 * 1024 * 1024)}
    errors = _refused(project, archive(tmp_path / "r.zip", [_pair(b="img/bomb.png")], files))
    assert len(errors) == 1
    assert errors[0].startswith("line 1, field 'rejected': file 'img/bomb.png' expands ")
    assert errors[0].endswith("(over the ratio cap of 200): refused as a possible zip bomb")
    _nothing_written(tmp_path)


def test_a_member_whose_directory_entry_lies_is_refused_while_reading(project, tmp_path):
    """The central directory says 1,000 bytes (ratio fine), the data holds 4 MiB."""
    files = {**OK_FILES, "img/lie.png": bytes(4 * 1024 * 1024)}
    path = archive(tmp_path / "l.zip", [_pair(b="img/lie.png")], files)
    data = bytearray(path.read_bytes())
    at = data.index(b"PK\x01\x02")
    while True:  # the central header of img/lie.png
        name_len = int.from_bytes(data[at + 28 : at + 30], "little")
        if data[at + 46 : at + 46 + name_len] == b"img/lie.png":
            break
        at = data.index(b"PK\x01\x02", at + 4)
    data[at + 24 : at + 28] = (1000).to_bytes(4, "little")
    path.write_bytes(bytes(data))

    errors = _refused(project, path)

    assert len(errors) == 1
    assert errors[0].startswith(
        "line 1, field 'rejected': file 'img/lie.png' cannot be read from the archive (Bad CRC-32"
    )
    _nothing_written(tmp_path)


def test_an_archive_without_a_manifest_at_its_root_is_refused(project, tmp_path):
    path = archive(tmp_path / "n.zip", [_pair()], OK_FILES, manifest="data/pairs.jsonl")
    with pytest.raises(ImportRejected) as exc:
        _import(project, path)
    assert exc.value.errors == [
        "the archive has no manifest at its root: add one of pairs.jsonl, pairs.csv, "
        "pairs.parquet beside the media folders (not inside a folder)"
    ]
    _nothing_written(tmp_path)


def test_an_archive_with_two_manifests_is_refused(project, tmp_path):
    path = archive(tmp_path / "two.zip", [_pair()], OK_FILES)
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("pairs.csv", "prompt,chosen,rejected\np,a,b\n")
    with pytest.raises(ImportRejected) as exc:
        _import(project, path)
    assert exc.value.errors == ["the archive has 2 manifests (pairs.jsonl, pairs.csv); keep one"]
    _nothing_written(tmp_path)


def test_a_file_named_as_image_that_is_audio_is_refused(project, tmp_path):
    files = {**OK_FILES, "img/c.png": audio_bytes(3)}
    errors = _refused(project, archive(tmp_path / "k.zip", [_pair(b="img/c.png")], files))
    assert errors == [
        "line 1, field 'rejected': file 'img/c.png' is named as image but its bytes are audio (WAV)"
    ]
    _nothing_written(tmp_path)


def test_broken_and_oversized_images_are_refused_with_their_rows(project, tmp_path, settings):
    settings.MEDIA_IMAGE_MAX_PIXELS = 100 * 100
    files = {
        **OK_FILES,
        "img/cut.png": image_bytes(5)[:200],
        "img/huge.png": image_bytes(6, size=(200, 200)),
        "img/text.png": b"hello, not an image",
    }
    rows = [_pair(), _pair(b="img/cut.png"), _pair(b="img/huge.png"), _pair(b="img/text.png")]

    errors = _refused(project, archive(tmp_path / "b.zip", rows, files))

    assert errors[0].startswith("line 2, field 'rejected': file 'img/cut.png' is not a valid PNG")
    assert errors[1].startswith("line 3, field 'rejected': file 'img/huge.png' has too many pixels")
    assert errors[2].startswith(
        "line 4, field 'rejected': file 'img/text.png' is not a supported file"
    )
    assert len(errors) == 3
    _nothing_written(tmp_path)


def test_identical_files_under_two_names_are_refused(project, tmp_path):
    files = {**OK_FILES, "img/copy.png": OK_FILES["img/a.png"]}
    errors = _refused(project, archive(tmp_path / "i.zip", [_pair(b="img/copy.png")], files))
    assert errors == ["line 1, field 'rejected': chosen and rejected are identical"]
    _nothing_written(tmp_path)


def test_errors_are_collected_the_first_hundred_and_a_count(project, tmp_path):
    rows = [_pair(b=f"img/missing{i}.png") for i in range(150)]
    errors = _refused(project, archive(tmp_path / "e.zip", rows, OK_FILES))
    assert len(errors) == 101
    assert errors[0] == "line 1, field 'rejected': file 'img/missing0.png' is not in the archive"
    assert errors[-1] == "... and 50 more"
    _nothing_written(tmp_path)


def test_an_uploaded_manifest_cannot_name_files(project, tmp_path):
    """Without an archive or a folder there is nowhere to find the files."""
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(orjson.dumps(_pair()))
    errors = _refused(project, path)
    assert errors[0] == (
        "line 1, field 'chosen': file 'img/a.png' cannot be found: upload the manifest and "
        "its files together in a .zip archive"
    )
    _nothing_written(tmp_path)


def test_a_symlink_out_of_the_manifest_folder_is_refused(project, tmp_path):
    outside = tmp_path / "outside.png"
    outside.write_bytes(image_bytes(9))
    folder = tmp_path / "set"
    (folder / "img").mkdir(parents=True)
    (folder / "img" / "a.png").write_bytes(image_bytes(1))
    os.symlink(outside, folder / "img" / "b.png")
    (folder / "pairs.jsonl").write_bytes(orjson.dumps(_pair()))

    errors = _refused(project, folder / "pairs.jsonl", media_folder=folder)

    assert errors == [
        "line 1, field 'rejected': file 'img/b.png' leads out of the manifest's folder "
        "(a symbolic link); refused"
    ]
    _nothing_written(tmp_path)


def test_command_refusing_a_folder_import_leaves_nothing(tmp_path, capsys):
    folder = tmp_path / "set"
    folder.mkdir()
    (folder / "pairs.jsonl").write_bytes(orjson.dumps(_pair()))

    with pytest.raises(CommandError, match="1 bad row"):
        call_command("import_pairs", str(folder / "pairs.jsonl"), project="cli", create=True)

    assert "line 1, field 'chosen': file 'img/a.png' is missing" in capsys.readouterr().err
    _nothing_written(tmp_path)


def test_files_written_are_deleted_when_the_transaction_fails(project, tmp_path, media_root):
    def progress(phase, done, total):
        if phase == "writing" and done:
            raise RuntimeError("the database went away")

    with pytest.raises(RuntimeError):
        _import(project, image_pairs_archive(tmp_path / "a.zip", n=3), progress=progress)

    _nothing_written(tmp_path)


def test_files_already_stored_are_kept_when_another_import_fails(project, tmp_path, media_root):
    _import(project, image_pairs_archive(tmp_path / "a.zip", n=2))
    before = _files(media_root)

    def progress(phase, done, total):
        if phase == "writing" and done:
            raise RuntimeError("boom")

    # Same two pairs plus one: only the new pair's two files were this import's.
    with pytest.raises(RuntimeError):
        _import(project, image_pairs_archive(tmp_path / "b.zip", n=3), progress=progress)

    assert _files(media_root) == before


# ---------------------------------------------------------------- jobs and uploads


def _job(project, admin, name: str, data: bytes) -> ImportJob:
    return ImportJob.objects.create(
        project=project, created_by=admin, original_name=name,
        file=SimpleUploadedFile(name, data),
    )  # fmt: skip


def _zip_bytes(tmp_path: Path, n: int = 2) -> bytes:
    return image_pairs_archive(tmp_path / "up.zip", n=n).read_bytes()


@pytest.mark.parametrize("good", [True, False])
def test_a_finished_job_deletes_its_upload(project, admin, tmp_path, settings, good):
    data = _zip_bytes(tmp_path) if good else b"PK\x05\x06" + bytes(18)
    job = _job(project, admin, "up.zip", data)
    stored = Path(settings.IMPORT_ROOT) / job.file.name
    assert stored.is_file()

    done = import_job_execute(job=job)

    assert done.status == ("succeeded" if good else "failed"), done.errors
    assert not stored.exists()
    assert done.file.name  # the job still says what it imported
    assert Comparison.objects.count() == (2 if good else 0)


def test_a_cancelled_queued_job_deletes_its_upload(project, admin, tmp_path, settings):
    job = _job(project, admin, "up.zip", _zip_bytes(tmp_path))
    stored = Path(settings.IMPORT_ROOT) / job.file.name

    cancelled = import_job_cancel(job=job)

    assert cancelled.status == "cancelled"
    assert not stored.exists()
    assert import_job_execute(job=job).status == "cancelled"
    assert not Comparison.objects.exists()


def test_the_import_page_accepts_a_zip(client, project, admin, tmp_path):
    assert client.login(username=admin.username, password=PASSWORD)
    response = client.post(
        reverse("annotation:import", args=[project.slug]),
        {"file": SimpleUploadedFile("up.zip", _zip_bytes(tmp_path)), "format": "auto",
         "pairs": "all", "max_pairs": 45},
    )  # fmt: skip
    assert response.status_code == 302
    assert ImportJob.objects.get().original_name == "up.zip"


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_uploaded_archive_is_imported_by_the_worker_and_its_upload_removed(
    client, project, admin, tmp_path, settings, celery_worker
):
    data = _zip_bytes(tmp_path, n=5)
    assert client.login(username=admin.username, password=PASSWORD)
    response = client.post(
        reverse("annotation:import", args=[project.slug]),
        {"file": SimpleUploadedFile("media.zip", data), "format": "auto", "pairs": "all",
         "max_pairs": 45},
    )  # fmt: skip
    assert response.status_code == 302
    job = ImportJob.objects.get(original_name="media.zip")
    stored = Path(settings.IMPORT_ROOT) / job.file.name
    deadline = time.monotonic() + 180
    while not job.is_finished and time.monotonic() < deadline:
        time.sleep(0.1)
        job.refresh_from_db()

    assert job.status == "succeeded", job.errors
    assert job.summary["message"].startswith("imported 5 comparisons (5 prompts, 10 candidates")
    # The worker deletes the upload right after it committed the job's end.
    while stored.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not stored.exists()
    assert Candidate.objects.filter(kind="image").count() == 10
    page = client.get(reverse("annotation:import_job", args=[project.slug, job.id]))
    assert page.status_code == 200
