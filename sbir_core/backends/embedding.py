"""Backends that embed sketches and photos into one space and rank by cosine similarity."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..config import MODELS_DIR
from ..data.preprocess import Preprocess
from ..index import l2_normalise
from .base import Backend, register_backend
from .onnx_model import OnnxModel, file_fingerprint, read_meta


class EmbeddingBackend(Backend):
    """Sketch encoder + photo encoder (ONNX files named in `models/<name>.json`), cosine ranking."""

    def __init__(self, threads: int | None = None, models_dir: Path | None = None):
        models_dir = models_dir or MODELS_DIR
        self.meta = read_meta(self.name, models_dir)
        self.preprocess = Preprocess.from_dict(self.meta["preprocess"])
        self.sketch_model = OnnxModel.load(models_dir / self.meta["sketch_model"], threads)
        same = self.meta["photo_model"] == self.meta["sketch_model"]
        self.photo_model = self.sketch_model if same else OnnxModel.load(models_dir / self.meta["photo_model"], threads)
        self._key = f"{self.name}-{file_fingerprint(self.photo_model.path)}"

    @property
    def feature_key(self) -> str:
        return self._key

    def encode_photos(self, x: np.ndarray) -> np.ndarray:
        return l2_normalise(self.photo_model(x)[0]).astype(np.float32)                  # (B, D)

    def encode_sketches(self, x: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        return l2_normalise(self.sketch_model(x)[0]).astype(np.float32), {}              # (B, D)

    def score(self, queries: np.ndarray, features: np.ndarray, labels: Sequence[str | None]) -> np.ndarray:
        return queries @ features.T                                                      # (Q, N) cosine


@register_backend("pretrained")
class PretrainedBackend(EmbeddingBackend):
    """Baseline: the ImageNet backbone as-is for sketches and photos (no training on sketches)."""
