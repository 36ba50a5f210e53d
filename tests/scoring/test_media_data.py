"""bench/media_data.py: the simulated media sets are valid import archives, say they are
simulated, and the tune and held-out splits share no source photo, voice or sentence."""

from __future__ import annotations

import shutil
import sys
import zipfile
from pathlib import Path

import orjson
import pytest

from annotation.media import media_inspect
from annotation.services.media import media_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import media_data  # noqa: E402


def _rows(path: Path) -> tuple[list[dict], zipfile.ZipFile]:
    zf = zipfile.ZipFile(path)
    return [orjson.loads(line) for line in zf.read("pairs.jsonl").splitlines()], zf


def test_splits_share_no_source():
    assert not set(media_data.PHOTOS["tune"]) & set(media_data.PHOTOS["heldout"])
    assert not set(media_data.VOICES["tune"]) & set(media_data.VOICES["heldout"])
    assert not set(media_data.SENTENCES["tune"]) & set(media_data.SENTENCES["heldout"])


@pytest.mark.parametrize("kind", ["image", "audio"])
def test_archive_is_a_valid_simulated_trl_media_set(tmp_path, kind):
    # make test installs espeak-ng (Debian) and scikit-image (requirements-dev.txt).
    assert kind != "audio" or shutil.which("espeak-ng"), (
        "espeak-ng is missing: make debian installs it"
    )
    path = media_data.media_archive_write(
        kind=kind, split="heldout", pairs=3, seed=0, out=tmp_path / "set.zip"
    )
    rows, zf = _rows(path)
    assert len(rows) == 3
    for row in rows:
        assert row["metadata"]["simulated"] is True
        assert row["metadata"]["split"] == "heldout"
        mild = row["metadata"]["chosen_degradation"][1]
        strong = row["metadata"]["rejected_degradation"][1]
        assert mild <= 0.4 < 0.6 <= strong  # the less degraded side is chosen
        for side in ("chosen", "rejected"):
            name = row[side][kind]
            assert "chosen" not in name
            assert "rejected" not in name
            assert media_inspect(zf.read(name), media_limits(), expect=kind).kind == kind
    again, _ = _rows(
        media_data.media_archive_write(
            kind=kind, split="heldout", pairs=3, seed=0, out=tmp_path / "again.zip"
        )
    )
    assert again == rows  # the same seed makes the same set
