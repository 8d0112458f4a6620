"""Backends that embed sketches and photos into one space and rank by cosine similarity."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..config import MODELS_DIR
from ..data.preprocess import Preprocess
from ..index import l2_normalise
from .base import Backend, register_backend
from .onnx_model import REBUILD_HINT, REQUIRED_BY_BACKEND, ModelFileError, OnnxChain, read_meta


class OnnxBackend(Backend):
    """A backend whose sketch and photo encoders are ONNX files (or chains of files) named in
    `models/<name>.json`, with the preprocessing they were trained with."""

    def __init__(self, threads: int | None = None, models_dir: Path | None = None):
        models_dir = models_dir or MODELS_DIR
        self.meta = read_meta(self.name, models_dir)
        self.models_dir = models_dir
        self.preprocess = Preprocess.from_dict(self.meta["preprocess"])
        if "photo_preprocess" in self.meta:
            self.photo_preprocess = Preprocess.from_dict(self.meta["photo_preprocess"])
        sessions: dict = {}
        self.sketch_model = OnnxChain.load(self.meta["sketch_model"], models_dir, threads, sessions)
        self.photo_model = OnnxChain.load(self.meta["photo_model"], models_dir, threads, sessions)
        self._key = f"{self.name}-{self.photo_model.fingerprint()}"
        self._check_meta_fits_models()

    def _check_meta_fits_models(self) -> None:
        """Metadata that parses but does not fit the ONNX files (input size, class count) fails
        here, naming the field, instead of in the middle of a search."""
        checks = [("preprocess", self.sketch_model, self.preprocess.size),
                  ("photo_preprocess" if "photo_preprocess" in self.meta else "preprocess", self.photo_model,
                   (self.photo_preprocess or self.preprocess).size)]
        for field_name, chain, size in checks:
            dims = chain.models[0].session.get_inputs()[0].shape[-2:]
            if all(isinstance(d, int) for d in dims) and tuple(dims) != (size, size):
                raise ModelFileError(f"model metadata {self.name}.json: field '{field_name}' has size {size} but "
                                     f"{chain.paths[0].name} takes {dims[0]}×{dims[1]} inputs; {REBUILD_HINT}")
        if "classes" in REQUIRED_BY_BACKEND.get(self.name, ()):
            n_out = self.sketch_model.models[-1].session.get_outputs()[0].shape[-1]
            if isinstance(n_out, int) and n_out != len(self.meta["classes"]):
                raise ModelFileError(f"model metadata {self.name}.json: field 'classes' lists {len(self.meta['classes'])} "
                                     f"classes but the model scores {n_out}; {REBUILD_HINT}")

    @property
    def feature_key(self) -> str:
        return self._key


class EmbeddingBackend(OnnxBackend):
    """Sketch and photo encoders into one space; ranking by cosine similarity."""

    @property
    def default_threshold(self) -> float:
        """Where the app's similarity slider starts: chosen on validation data by the trainer
        (`default_threshold` in the metadata) where it was, else 0.5."""
        return float(self.meta.get("default_threshold", 0.5))

    def encode_photos(self, x: np.ndarray) -> np.ndarray:
        return l2_normalise(self.photo_model(x)[0]).astype(np.float32)                  # (B, D)

    def encode_sketches(self, x: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        return l2_normalise(self.sketch_model(x)[0]).astype(np.float32), {}              # (B, D)

    def score(self, queries: np.ndarray, features: np.ndarray, labels: Sequence[str | None]) -> np.ndarray:
        return queries @ features.T                                                      # (Q, N) cosine


@register_backend("pretrained")
class PretrainedBackend(EmbeddingBackend):
    """Baseline: the ImageNet backbone as-is for sketches and photos (no training on sketches)."""


@register_backend("triplet")
class TripletBackend(EmbeddingBackend):
    """Joint sketch/photo embedding trained with triplet + classification losses and an edge-map branch."""


@register_backend("triplet_noedge")
class TripletNoEdgeBackend(EmbeddingBackend):
    """Ablation of `triplet`: the same training without the edge-map branch."""


@register_backend("context")
class ContextBackend(EmbeddingBackend):
    """Unsupervised cross-domain context prediction (Joshi et al. 2019): one encoder, trained without
    sketches or labels to tell where a photo patch lies next to an edge-map patch, embeds both the
    photo and the sketch (through its edge-domain path); cosine nearest neighbours."""
