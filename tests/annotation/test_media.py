"""annotation.media: the type from the bytes, Pillow's checks and the audio decode."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from annotation.media import Limits, MediaInvalid, blob_name, media_inspect, sniff
from tests.media_samples import audio_bytes, image_bytes


@pytest.mark.parametrize(("fmt", "ext"), [("PNG", ".png"), ("JPEG", ".jpg"), ("WEBP", ".webp")])
def test_images_are_recognised_from_their_bytes(fmt, ext):
    info = media_inspect(image_bytes(1, fmt=fmt), Limits(), expect="image")
    assert (info.kind, info.ext, info.width, info.height) == ("image", ext, 64, 48)
    assert info.name == blob_name(info.hash, ext) == f"blobs/{info.hash[:2]}/{info.hash}{ext}"


@pytest.mark.parametrize(("fmt", "ext"), [("WAV", ".wav"), ("FLAC", ".flac"), ("OGG", ".ogg")])
def test_audio_is_decoded(fmt, ext):
    info = media_inspect(audio_bytes(1, seconds=0.5, fmt=fmt), Limits(), expect="audio")
    assert (info.kind, info.ext) == ("audio", ext)
    assert info.seconds == pytest.approx(0.5, abs=0.01)


def test_a_text_file_named_png_is_refused():
    with pytest.raises(MediaInvalid, match="judged from its bytes"):
        sniff(b"<html><script>alert(1)</script></html>")


def test_an_image_named_as_audio_is_refused():
    with pytest.raises(MediaInvalid, match="named as audio but its bytes are image"):
        media_inspect(image_bytes(2), Limits(), expect="audio")


def test_a_truncated_image_is_refused():
    data = image_bytes(3, size=(200, 200), fmt="JPEG")
    with pytest.raises(MediaInvalid, match="not a valid JPEG"):
        media_inspect(data[: len(data) // 2], Limits())


def test_a_decompression_bomb_is_refused_before_decoding():
    # A 6000x6000 PNG of one colour compresses to a few kB: the pixel cap refuses it.
    out = io.BytesIO()
    Image.new("L", (6000, 6000)).save(out, format="PNG")
    assert len(out.getvalue()) < 200_000
    with pytest.raises(MediaInvalid, match="pixels"):
        media_inspect(out.getvalue(), Limits(image_max_pixels=10_000_000, image_max_side=10_000))


def test_image_side_and_size_caps():
    data = image_bytes(4, size=(300, 20))
    with pytest.raises(MediaInvalid, match="longest side may be 256"):
        media_inspect(data, Limits(image_max_side=256))
    with pytest.raises(MediaInvalid, match="byte limit for images"):
        media_inspect(data, Limits(image_max_bytes=100))


def test_audio_duration_cap():
    with pytest.raises(MediaInvalid, match="over the 1 s limit"):
        media_inspect(audio_bytes(5, seconds=2.0), Limits(audio_max_seconds=1.0))


def test_corrupt_audio_is_refused():
    data = bytearray(audio_bytes(6, fmt="FLAC"))
    data[50:] = np.random.default_rng(0).integers(0, 255, len(data) - 50, dtype=np.uint8).tobytes()
    with pytest.raises(MediaInvalid, match="FLAC"):
        media_inspect(bytes(data), Limits())
