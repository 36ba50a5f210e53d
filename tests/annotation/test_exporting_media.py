"""Exporting image and audio projects: the archive in the import's shape, Parquet that the
`datasets` library decodes, the refusals (plain JSONL, Parquet mixing kinds) and the web
download."""

from __future__ import annotations

import io
import uuid
import zipfile
from pathlib import Path

import numpy as np
import orjson
import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from PIL import Image

from annotation.media import media_inspect
from annotation.models import Candidate, Comparison, Project, Prompt
from annotation.services.media import media_limits, media_save
from tests.factories import PASSWORD, comparison_make, media_comparison_make
from tests.media_samples import image_bytes

pytestmark = pytest.mark.django_db


def _stored(name: str) -> bytes:
    with default_storage.open(name, "rb") as fh:
        return fh.read()


def _labelled(project: Project, kind: str = "image", n: int = 3) -> list[Comparison]:
    """`n` labelled media pairs (A, B, A, ...; a margin on the first), one unlabelled and one
    that curation dropped (neither exported)."""
    made = [
        media_comparison_make(
            project, kind=kind, seed=i, label="a" if i % 2 == 0 else "b",
            label_margin=1.5 if i == 0 else None,
        )
        for i in range(n)
    ]  # fmt: skip
    media_comparison_make(project, kind=kind, seed=n)
    media_comparison_make(project, kind=kind, seed=n + 1, label="a", excluded=True)
    return made


def _same_files_again(project: Project, comparison: Comparison, **fields) -> Comparison:
    """Another prompt whose candidates are the same files (as an import makes them when two
    rows name the same image): the archive must hold each file once."""
    prompt = Prompt.objects.create(project=project, content_hash=uuid.uuid4().hex, text="again")
    a, b = (
        Candidate.objects.create(
            prompt=prompt, kind=c.kind, content_hash=c.content_hash, file=c.file.name,
            content_type=c.content_type, size=c.size, metadata=c.metadata,
        )
        for c in (comparison.candidate_a, comparison.candidate_b)
    )  # fmt: skip
    return Comparison.objects.create(
        project=project, prompt=prompt, candidate_a=a, candidate_b=b, **fields
    )


def _prompt_image(prompt: Prompt, seed: int = 99, alt: str = "the photo to edit") -> str:
    data = image_bytes(seed)
    info = media_inspect(data, media_limits(), expect="image")
    media_save(data=data, info=info)
    prompt.media = info.name
    prompt.media_content_type = info.content_type
    prompt.metadata = {"media_alt": alt}
    prompt.save()
    return info.name


def _export(project: Project, path: Path, fmt: str, **opts) -> Path:
    call_command("export_pairs", str(path), project=project.slug, format=fmt, **opts)
    return path


def _arc(name: str, kind: str = "image") -> str:
    return f"{'img' if kind == 'image' else 'audio'}/{Path(name).name}"


# ---------------------------------------------------------------------------- archive


def test_the_archive_holds_the_manifest_and_each_file_once(project, tmp_path):
    first, second, third = _labelled(project)
    Candidate.objects.filter(pk=first.candidate_a_id).update(metadata={"alt": "a red ball"})
    first.refresh_from_db()
    again = _same_files_again(project, first, label="b", external_id="row-again")
    Comparison.objects.filter(pk=second.pk).update(metadata={"source": "sim"})
    prompt_file = _prompt_image(third.prompt)

    out = _export(project, tmp_path / "export.zip", "archive")

    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        rows = [orjson.loads(line) for line in zf.read("pairs.jsonl").splitlines()]
        contents = {name: zf.read(name) for name in names if name != "pairs.jsonl"}
    a1, b1 = (_arc(c.file.name) for c in (first.candidate_a, first.candidate_b))
    a2, b2 = (_arc(c.file.name) for c in (second.candidate_a, second.candidate_b))
    a3, b3 = (_arc(c.file.name) for c in (third.candidate_a, third.candidate_b))
    assert rows == [
        {"prompt": "image prompt 0", "chosen": {"image": a1, "alt": "a red ball"},
         "rejected": {"image": b1}, "margin": 1.5, "id": str(first.pk)},
        {"prompt": "image prompt 1", "chosen": {"image": b2}, "rejected": {"image": a2},
         "margin": None, "id": str(second.pk), "metadata": {"source": "sim"}},
        {"prompt": {"text": "image prompt 2", "image": _arc(prompt_file),
                    "alt": "the photo to edit"},
         "chosen": {"image": a3}, "rejected": {"image": b3}, "margin": None, "id": str(third.pk)},
        {"prompt": "again", "chosen": {"image": b1}, "rejected": {"image": a1, "alt": "a red ball"},
         "margin": None, "id": "row-again"},
    ]  # fmt: skip
    assert again.candidate_a.file.name == first.candidate_a.file.name
    # The manifest first, then each file once, byte for byte what storage holds.
    assert names[0] == "pairs.jsonl"
    assert len(names) == len(set(names)) == 1 + 7
    assert set(contents) == {a1, b1, a2, b2, a3, b3, _arc(prompt_file)}
    stored = [first.candidate_a, first.candidate_b, second.candidate_a, second.candidate_b,
              third.candidate_a, third.candidate_b]  # fmt: skip
    for candidate in stored:
        assert contents[_arc(candidate.file.name)] == _stored(candidate.file.name)
        assert Path(candidate.file.name).stem == candidate.content_hash
    assert contents[_arc(prompt_file)] == _stored(prompt_file)


def test_an_audio_archive_names_its_files_under_audio(project, tmp_path):
    (comparison,) = _labelled(project, kind="audio", n=1)

    out = _export(project, tmp_path / "export.zip", "archive")

    with zipfile.ZipFile(out) as zf:
        (row,) = [orjson.loads(line) for line in zf.read("pairs.jsonl").splitlines()]
        chosen = zf.read(row["chosen"]["audio"])
    assert row["chosen"] == {"audio": _arc(comparison.candidate_a.file.name, "audio")}
    assert row["chosen"]["audio"].endswith(".wav")
    assert chosen == _stored(comparison.candidate_a.file.name)


def test_a_file_missing_from_storage_refuses_the_export_and_names_it(project, tmp_path):
    (comparison,) = _labelled(project, n=1)
    default_storage.delete(comparison.candidate_b.file.name)
    out = tmp_path / "export.zip"

    with pytest.raises(CommandError, match=comparison.candidate_b.file.name):
        _export(project, out, "archive")

    assert not out.exists()


# ---------------------------------------------------------------------------- parquet


def _load(path: Path, tmp_path: Path):
    import datasets

    return datasets.load_dataset(
        "parquet", data_files=str(path), split="train", cache_dir=str(tmp_path / "hf")
    )


def test_image_parquet_loads_with_datasets_as_images(project, tmp_path):
    first, second, third = _labelled(project)
    prompt_file = _prompt_image(third.prompt)
    Candidate.objects.filter(pk=second.candidate_a_id).update(metadata={"alt": "a red ball"})

    ds = _load(_export(project, tmp_path / "export.parquet", "trl-parquet"), tmp_path)

    assert ds.column_names == [
        "prompt", "chosen", "rejected", "prompt_image", "chosen_alt", "rejected_alt",
        "prompt_alt", "margin", "id",
    ]  # fmt: skip
    assert ds["rejected_alt"] == [None, "a red ball", None]
    assert ds["prompt_alt"] == [None, None, "the photo to edit"]
    assert ds.features["chosen"].__class__.__name__ == "Image"
    assert ds.num_rows == 3
    assert ds["id"] == [str(c.pk) for c in (first, second, third)]
    assert ds["margin"] == [1.5, None, None]
    row = ds[1]
    assert isinstance(row["chosen"], Image.Image)
    # Chosen is the labelled side (B for the second pair), pixel for pixel.
    want = Image.open(io.BytesIO(_stored(second.candidate_b.file.name)))
    assert row["chosen"].size == want.size == (64, 48)
    assert np.array_equal(np.asarray(row["chosen"]), np.asarray(want))
    assert row["prompt_image"] is None
    assert ds[2]["prompt_image"].size == Image.open(io.BytesIO(_stored(prompt_file))).size


def test_audio_parquet_loads_with_datasets_as_arrays(project, tmp_path):
    import soundfile

    (first, second) = _labelled(project, kind="audio", n=2)

    ds = _load(
        _export(project, tmp_path / "export.parquet", "trl-parquet", with_confidence=True),
        tmp_path,
    )

    assert ds.column_names == [
        "prompt", "chosen", "rejected", "margin", "id", "confidence", "label_source",
    ]  # fmt: skip
    assert ds.features["rejected"].__class__.__name__ == "Audio"
    chosen = ds[0]["chosen"]
    want, rate = soundfile.read(io.BytesIO(_stored(first.candidate_a.file.name)))
    assert chosen["sampling_rate"] == rate == 16000
    assert chosen["array"].shape == want.shape == (8000,)
    assert np.allclose(chosen["array"], want, atol=1e-4)
    assert ds[1]["prompt"] == "audio prompt 1"


def test_parquet_row_groups_are_cut_by_the_size_of_their_files(project, tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    from annotation.services import exporting_media

    _labelled(project, n=3)
    # Each row's two images pass this: one row group per row, so memory holds one row.
    monkeypatch.setattr(exporting_media, "MEDIA_ROW_GROUP_BYTES", 100)

    out = _export(project, tmp_path / "export.parquet", "trl-parquet")

    assert pq.ParquetFile(out).metadata.num_row_groups == 3
    assert _load(out, tmp_path).num_rows == 3


def test_parquet_refuses_a_project_mixing_text_and_images(project, tmp_path):
    _labelled(project, n=1)
    comparison_make(project, label="a")
    out = tmp_path / "export.parquet"

    with pytest.raises(CommandError, match=r"mix image and text.*--format archive"):
        _export(project, out, "trl-parquet")

    assert not out.exists()
    # The archive takes it: the text pair's candidates are strings there.
    with zipfile.ZipFile(_export(project, tmp_path / "export.zip", "archive")) as zf:
        rows = [orjson.loads(line) for line in zf.read("pairs.jsonl").splitlines()]
    assert [type(r["chosen"]).__name__ for r in rows] == ["dict", "str"]


def test_a_text_project_keeps_its_text_parquet(project, tmp_path):
    comparison_make(project, label="a")

    ds = _load(_export(project, tmp_path / "export.parquet", "trl-parquet"), tmp_path)

    assert ds.column_names == ["prompt", "chosen", "rejected", "margin", "id"]
    assert isinstance(ds[0]["chosen"], str)


# ---------------------------------------------------------------------------- jsonl refused


def test_jsonl_of_a_media_project_is_refused_naming_the_media_formats(project, tmp_path):
    _labelled(project, n=1)
    out = tmp_path / "export.jsonl"

    with pytest.raises(CommandError, match=r"--format archive.*--format trl-parquet") as exc:
        _export(project, out, "trl-jsonl")

    assert exc.value.returncode == 1  # manage.py exits with 1
    assert not out.exists()


def test_the_command_reports_what_it_exported(project, tmp_path, capsys):
    _labelled(project, n=2)

    call_command("export_pairs", str(tmp_path / "e.zip"), project=project.slug, format="archive")

    assert f"exported 2 pairs to {tmp_path / 'e.zip'}" in capsys.readouterr().out


# ---------------------------------------------------------------------------- web


def _login(client, user) -> None:
    assert client.login(username=user.username, password=PASSWORD)


def test_the_project_page_offers_the_media_exports(client, project, admin):
    _labelled(project, n=1)
    _login(client, admin)

    page = client.get(reverse("annotation:project", args=[project.slug])).content.decode()

    assert reverse("annotation:export", args=[project.slug, "zip"]) in page
    assert reverse("annotation:export", args=[project.slug, "parquet"]) in page
    assert reverse("annotation:export", args=[project.slug, "jsonl"]) not in page


def test_a_text_project_page_offers_no_archive(client, project, admin):
    comparison_make(project, label="a")
    _login(client, admin)

    page = client.get(reverse("annotation:project", args=[project.slug])).content.decode()

    assert reverse("annotation:export", args=[project.slug, "jsonl"]) in page
    assert reverse("annotation:export", args=[project.slug, "zip"]) not in page


def test_an_admin_downloads_the_archive_and_the_parquet(client, project, admin, tmp_path):
    (comparison,) = _labelled(project, n=1)
    _login(client, admin)

    response = client.get(reverse("annotation:export", args=[project.slug, "zip"]))

    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="alpha.zip"'
    with zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))) as zf:
        (row,) = [orjson.loads(line) for line in zf.read("pairs.jsonl").splitlines()]
        assert zf.read(row["rejected"]["image"]) == _stored(comparison.candidate_b.file.name)
    assert row["id"] == str(comparison.pk)

    response = client.get(reverse("annotation:export", args=[project.slug, "parquet"]))
    path = tmp_path / "web.parquet"
    path.write_bytes(b"".join(response.streaming_content))
    ds = _load(path, tmp_path)
    assert ds[0]["id"] == str(comparison.pk)
    assert isinstance(ds[0]["chosen"], Image.Image)


def test_the_jsonl_download_of_a_media_project_says_why_not(client, project, admin):
    _labelled(project, n=1)
    _login(client, admin)

    response = client.get(reverse("annotation:export", args=[project.slug, "jsonl"]), follow=True)

    assert response.redirect_chain == [(reverse("annotation:project", args=[project.slug]), 302)]
    page = response.content.decode()
    assert "JSONL cannot carry" in page
    assert "--format archive" in page


def test_the_parquet_download_of_a_mixed_project_says_why_not(client, project, admin):
    _labelled(project, n=1)
    comparison_make(project, label="a")
    _login(client, admin)

    response = client.get(reverse("annotation:export", args=[project.slug, "parquet"]), follow=True)

    assert response.redirect_chain == [(reverse("annotation:project", args=[project.slug]), 302)]
    assert "mix image and text" in response.content.decode()


def test_outsiders_and_annotators_get_404_for_the_media_exports(
    client, project, annotator, outsider
):
    _labelled(project, n=1)
    for user in (outsider, annotator):
        client.logout()
        _login(client, user)
        for ext in ("zip", "parquet", "jsonl"):
            url = reverse("annotation:export", args=[project.slug, ext])
            assert client.get(url).status_code == 404, (user.username, ext)


def test_an_unknown_export_extension_is_404(client, project, admin):
    _login(client, admin)

    assert client.get(reverse("annotation:export", args=[project.slug, "tar"])).status_code == 404


# ---------------------------------------------------------------------------- round trip


def _manifest(path: Path) -> list[dict]:
    with zipfile.ZipFile(path) as zf:
        return [orjson.loads(line) for line in zf.read("pairs.jsonl").splitlines()]


def _pairs(project: Project) -> set[tuple]:
    """What makes two projects equal here: each labelled pair's prompt (text and file),
    chosen and rejected content hashes, margin and alt texts."""
    out = set()
    for c in Comparison.objects.filter(project=project, label__in=["a", "b"], excluded=False):
        chosen, rejected = (
            (c.candidate_a, c.candidate_b) if c.label == "a" else (c.candidate_b, c.candidate_a)
        )
        out.add(
            (
                c.prompt.text,
                Path(c.prompt.media.name).name if c.prompt.media else "",
                c.prompt.metadata.get("media_alt", ""),
                chosen.kind, chosen.content_hash, chosen.metadata.get("alt", ""),
                rejected.kind, rejected.content_hash, rejected.metadata.get("alt", ""),
                c.label_margin,
            )
        )  # fmt: skip
    return out


@pytest.mark.parametrize("kind", ["image", "audio"])
def test_the_archive_imports_again_into_an_equal_project(project, tmp_path, kind):
    from annotation.services.importing import pairs_import

    first, _second, third = _labelled(project, kind=kind)
    Candidate.objects.filter(pk=first.candidate_b_id).update(metadata={"alt": "the quiet one"})
    _same_files_again(project, first, label="b", external_id="row-again")
    if kind == "image":
        _prompt_image(third.prompt)
    out = _export(project, tmp_path / "export.zip", "archive")
    again = Project.objects.create(slug="again", name="Again")

    result = pairs_import(project=again, path=out, source_name="import:export.zip")

    assert result.comparisons_created == 4
    assert _pairs(again) == _pairs(project)
    assert len(_pairs(project)) == 4
    # Its own export is the same archive, row for row and file for file.
    out_again = _export(again, tmp_path / "again.zip", "archive")
    assert _manifest(out_again) == _manifest(out)
    with zipfile.ZipFile(out) as a, zipfile.ZipFile(out_again) as b:
        assert sorted(a.namelist()) == sorted(b.namelist())
        assert all(a.read(name) == b.read(name) for name in a.namelist())


def test_the_parquet_export_imports_again_too(project, tmp_path):
    from annotation.services.importing import pairs_import

    _labelled(project)
    out = _export(project, tmp_path / "export.parquet", "trl-parquet")
    again = Project.objects.create(slug="again", name="Again")

    result = pairs_import(project=again, path=out, source_name="import:export.parquet")

    assert result.comparisons_created == 3
    assert _pairs(again) == _pairs(project)


def test_a_parquet_prompt_image_imports_again(project, tmp_path):
    from annotation.services.importing import pairs_import

    (comparison,) = _labelled(project, n=1)
    _prompt_image(comparison.prompt, alt="the photo to edit")
    out = _export(project, tmp_path / "export.parquet", "trl-parquet")
    again = Project.objects.create(slug="again", name="Again")

    pairs_import(project=again, path=out, source_name="import:export.parquet")

    prompt = Prompt.objects.get(project=again)
    assert prompt.media.name == comparison.prompt.media.name
    assert prompt.metadata.get("media_alt") == "the photo to edit"
