"""Image and audio embeddings with the real bundled encoders (EfficientNet-Lite0, aisfx):
the vectors, the embedding store for media candidates, and the embedding task after an
import on the real Celery worker."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from django.db import transaction

from annotation.models import Candidate, Prompt
from annotation.signals import pairs_imported
from scoring.encoders import AudioEncoder, ImageEncoder, encoder_for
from scoring.models import Embedding
from scoring.selectors import embeddings_load, embeddings_missing
from scoring.services.embeddings import embeddings_compute_project, pair_encoders
from tests.factories import media_comparison_make
from tests.media_samples import audio_bytes, image_bytes
from tests.scoring.media_pairs import noisy_audio, noisy_image


@pytest.fixture(scope="module")
def image_encoder():
    encoder = encoder_for("image", "cpu")
    encoder.encode([image_bytes(0)])  # loads the model once for the module
    return encoder


@pytest.fixture(scope="module")
def audio_encoder():
    encoder = encoder_for("audio", "cpu")
    encoder.encode([audio_bytes(0)])
    return encoder


def test_media_encoders_load_lazily_and_name_their_version():
    image, audio = ImageEncoder(), AudioEncoder()
    assert image._model is None
    assert audio._model is None
    assert (image.modality, image.dim, image.version) == (
        "image",
        1280,
        "efficientnet-lite0@0.1.0+w0.1.0",
    )
    assert (audio.modality, audio.dim, audio.version) == ("audio", 512, "aisfx@0.1.2")
    assert image.encode([]).shape == (0, 1280)
    assert audio.encode([]).shape == (0, 512)
    assert image._model is None
    assert audio._model is None


def _cos(a, b) -> float:
    return float(np.dot(a, b))


def test_image_vectors_are_normalised_and_do_not_depend_on_the_batch(image_encoder):
    from PIL import Image

    photo = image_bytes(3, size=(120, 90))
    with Image.open(io.BytesIO(photo)) as img:
        rgba = io.BytesIO()
        img.convert("RGBA").save(rgba, format="PNG")
    files = [photo, image_bytes(4), noisy_image(photo, 0), image_bytes(3, (120, 90), "JPEG")]
    vectors = image_encoder.encode([*files, image_bytes(3, (120, 90), "WEBP"), rgba.getvalue()])

    assert vectors.shape == (6, 1280)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    alone = image_encoder.encode([photo])[0]
    np.testing.assert_allclose(alone, vectors[0], atol=1e-5)
    # The same picture with an (opaque) alpha channel is the same vector; as JPEG or WebP
    # it is closer than a heavily noised copy.
    assert _cos(vectors[0], vectors[5]) > 0.999
    assert min(_cos(vectors[0], vectors[i]) for i in (3, 4)) > _cos(vectors[0], vectors[2])
    assert _cos(vectors[0], vectors[1]) < 0.99  # another picture


def test_audio_vectors_are_mean_pooled_whatever_the_rate_length_and_batch(audio_encoder):
    import soundfile

    tone = audio_bytes(5, seconds=0.8, rate=16000)
    long = audio_bytes(6, seconds=5.0, rate=22050, fmt="FLAC")  # several 2.3 s blocks
    wave, rate = soundfile.read(io.BytesIO(tone), dtype="float32")
    stereo = io.BytesIO()
    soundfile.write(stereo, np.stack([wave, wave], axis=1), rate, format="FLAC")
    vectors = audio_encoder.encode([tone, long, noisy_audio(tone, 1), stereo.getvalue()])

    assert vectors.shape == (4, 512)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(audio_encoder.encode([long])[0], vectors[1], atol=1e-5)
    np.testing.assert_allclose(audio_encoder.encode([tone])[0], vectors[0], atol=1e-5)
    assert _cos(vectors[0], vectors[3]) > 0.99  # stereo of the same clip
    assert _cos(vectors[0], vectors[2]) < 0.99  # noise moves it


@pytest.mark.django_db
def test_media_project_embeds_prompts_as_text_and_files_with_their_encoder(
    project, other_project, image_encoder
):
    pairs = [media_comparison_make(project, kind="image", seed=i) for i in range(3)]
    media_comparison_make(other_project, kind="image", seed=0)  # the same files as pairs[0]
    encoders = pair_encoders(project=project)
    assert (encoders.prompt.modality, encoders.response) == ("text", image_encoder)
    missing = dict(embeddings_missing(project=project, encoder=image_encoder))
    files = dict(
        Candidate.objects.filter(prompt__project=project).values_list("content_hash", "file")
    )
    assert missing == files  # (content hash, storage name) of each image

    created = embeddings_compute_project(project=project)

    assert created == 3 + 6  # 3 prompts (text), 6 images
    prompts = list(Prompt.objects.filter(project=project).values_list("content_hash", flat=True))
    assert Embedding.objects.filter(content_hash__in=prompts, dim=384).count() == 3
    images = Embedding.objects.filter(encoder=image_encoder.version, dim=1280, dtype="f2")
    assert set(images.values_list("content_hash", flat=True)) == set(files)
    stored = embeddings_load(
        content_hashes=[pairs[1].candidate_a.content_hash], encoder=image_encoder
    )
    expected = image_encoder.encode([pairs[1].candidate_a.file.open("rb").read()])
    np.testing.assert_allclose(stored[0], expected[0], atol=2e-3)  # float16 storage
    assert embeddings_compute_project(project=project) == 0  # nothing left to do
    # The other project's files are the same content: only its prompt is new.
    assert embeddings_compute_project(project=other_project) == 1


def _wait_for(count, query, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if query.count() >= count:
            return
        time.sleep(0.25)
    pytest.fail(f"{query.count()} of {count} vectors after {timeout} s")


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_import_signal_embeds_audio_candidates_on_the_worker(project, celery_worker):
    with transaction.atomic():
        for i in range(4):
            media_comparison_make(project, kind="audio", seed=i)
        pairs_imported.send(sender=None, project_id=project.pk)

    version = encoder_for("audio", "cpu").version
    hashes = set(
        Candidate.objects.filter(prompt__project=project).values_list("content_hash", flat=True)
    )
    _wait_for(len(hashes), Embedding.objects.filter(encoder=version, content_hash__in=hashes))
    prompts = Prompt.objects.filter(project=project).values_list("content_hash", flat=True)
    _wait_for(4, Embedding.objects.filter(content_hash__in=list(prompts), dim=384))
    assert set(Embedding.objects.filter(encoder=version).values_list("dim", flat=True)) == {512}
