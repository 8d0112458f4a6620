"""The `cgan` backend at serving time: the sketch becomes an imaginary photo (generator G), which
encoder E1 embeds; gallery photos are embedded by the frozen ImageNet encoder E2. ONNX Runtime only.

Two model layouts, told apart by `models/cgan.json`:
- version 1: `cgan_sketch.onnx` = G + a trained E1, sketch -> (imaginary photo, embedding);
- version 2: `cgan_generator.onnx` = G alone, conditioned on the sketch classifier's posterior (its
  ONNX chain, `class_model`, shared with the `classifier` backend); E1 = E2 (`backbone_lite0.onnx`,
  the `pretrained` backend's frozen encoder, at 128 px).
With `class_model` and `class_mix` > 0 (either version) a photo's score adds `class_mix` x the
sketch classifier's posterior of the photo's class (labelled photos only): retrieval by the
imaginary photo's features and the sketch's class reading together. The sketch is then prepared at
the classifier's side (`class_preprocess`) and area-resized to G's where they differ.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageFilter

from ..data.preprocess import Preprocess, photo_input
from ..index import l2_normalise
from .base import SearchResult, register_backend
from .embedding import EmbeddingBackend
from .onnx_model import ModelFileError, OnnxChain

DISPLAY_SIZE = 256     # the imaginary photo is shown at this side, next to the sketch


def imaginary_image(a: np.ndarray, size: int = DISPLAY_SIZE) -> Image.Image:
    """(3, R, R) in [0, 1] -> RGB image of side `size`: Lanczos upscaling and a light unsharp mask,
    so the small generated photo reads as a photo rather than as blocky pixels."""
    im = Image.fromarray((np.clip(a, 0, 1).transpose(1, 2, 0) * 255).round().astype(np.uint8))
    im = im.resize((size, size), Image.Resampling.LANCZOS)
    return im.filter(ImageFilter.UnsharpMask(radius=2, percent=60, threshold=2))


@register_backend("cgan")
class CGANBackend(EmbeddingBackend):
    """Guo et al. (ACM MM 2017): retrieval through the photo the person has in mind."""

    def __init__(self, threads: int | None = None, models_dir: Path | None = None):
        super().__init__(threads, models_dir)
        self.photo_preprocess = Preprocess.from_dict(self.meta["photo_preprocess"])   # E2's side, not the sketch's
        self.version = int(self.meta.get("version", 1))
        self.class_mix = float(self.meta.get("class_mix", 0.0))
        self.class_model = None
        self.g_side = self.preprocess.size                                              # G's input side
        if self.version == 2 and "class_model" not in self.meta:
            raise ModelFileError("model metadata cgan.json: version 2 needs field 'class_model' "
                                 "(the sketch classifier's ONNX files)")
        if "class_model" in self.meta:
            from ..config import MODELS_DIR
            self.class_model = OnnxChain.load(self.meta["class_model"], models_dir or MODELS_DIR, threads)
            self.classes = list(self.meta.get("classes") or _classifier_classes(models_dir or MODELS_DIR))
            if "class_preprocess" in self.meta:                                         # serving prepares this one
                self.preprocess = Preprocess.from_dict(self.meta["class_preprocess"])

    def photo_inputs(self, images: Sequence[Any]) -> np.ndarray:
        return np.stack([photo_input(im, self.photo_preprocess) for im in images])    # (B, 3, 128, 128)

    def imagine(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(B, 3, S, S) sketch inputs -> imaginary photos (B, 3, R, R) in [0, 1], unnormalised
        embeddings (B, 1280) and the class posterior (B, 365; None for version 1)."""
        probs = self.class_model(x)[0].astype(np.float32) if self.class_model is not None else None   # (B, 365)
        if self.version == 1:
            imaginary, emb = self.sketch_model(area_resize(x, self.g_side))
            return imaginary, emb, probs
        g = self.sketch_model.models[0]
        imaginary, e2_input = g.session.run(None, {g.input_name: np.ascontiguousarray(x, np.float32),
                                                   "class_probs": probs})
        return imaginary, self.photo_model(e2_input)[0], probs

    def encode_sketches(self, x: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        imaginary, emb, probs = self.imagine(x)                                        # (B, 3, R, R), (B, D)
        q = l2_normalise(emb).astype(np.float32)
        extras: dict[str, Any] = {"imaginary": imaginary_image(imaginary[0])}
        if probs is not None:
            top = np.argsort(-probs[0])[:5]
            extras["top_classes"] = [(self.classes[i], float(probs[0, i])) for i in top]
            if self.class_mix > 0:
                q = np.concatenate([q, probs], axis=1)                                 # (B, D + C)
                extras["query"] = q[:1]                                                # for the cards' cosine
        return q, extras

    def score(self, queries: np.ndarray, features: np.ndarray, labels: Sequence[str | None]) -> np.ndarray:
        """Cosine similarity of the imaginary photo's and the photos' embeddings; with `class_mix`,
        plus class_mix x P(sketch is of the photo's class) for photos whose label the classifier knows."""
        d = features.shape[1]
        s = queries[:, :d] @ features.T                                                  # (Q, N)
        if queries.shape[1] == d:
            return s
        idx = self._label_index(labels)                                                  # (N,), -1 unknown
        probs = queries[:, d:]
        cls = np.where(idx >= 0, probs[:, np.maximum(idx, 0)], 0.0)                      # (Q, N)
        return s + self.class_mix * cls

    @property
    def card_score(self) -> str:
        """'mixed' with the class reading mixed in: cards show the cosine, the order also weighs P(kind)."""
        return "mixed" if self.class_mix > 0 else "similarity"

    def search(self, sketch: Any, gallery: Any, k: int = 20) -> SearchResult:
        """Ranked by the score; with the class reading mixed in, the cards' scores are the imaginary
        photo's cosine similarity (the mixed score, cosine + class_mix x P(class), is no number a
        visitor can read; it stays in `extras['rank_scores']`)."""
        r = super().search(sketch, gallery, k)
        q = r.extras.pop("query", None)
        if q is None:
            return r
        feats = gallery.features(self)
        cos = (q[:, :feats.shape[1]] @ feats[r.indices].T)[0].astype(np.float32)          # (k,)
        r.extras["rank_scores"] = r.scores
        return SearchResult(r.ids, cos, r.labels, r.indices, r.extras)

    def search_within(self, sketch: Any, gallery: Any, threshold: float) -> SearchResult:
        """Every photo whose cosine similarity to the imaginary photo is >= threshold, in the order
        of the (mixed) score: the threshold keeps meaning a cosine when the class reading is mixed in."""
        if self.class_mix <= 0 or self.class_model is None:
            return super().search_within(sketch, gallery, threshold)
        threshold = self.check_threshold(threshold)
        r = self.search(sketch, gallery, k=len(gallery))                                 # scores: cosines
        keep = r.scores >= threshold
        r.extras["rank_scores"] = r.extras["rank_scores"][keep]
        return SearchResult([i for i, k in zip(r.ids, keep) if k], r.scores[keep],
                            [l for l, k in zip(r.labels, keep) if k], r.indices[keep], r.extras)

    def _label_index(self, labels: Sequence[str | None]) -> np.ndarray:
        """Each photo's class index in the classifier's list (-1 when unlabelled or unknown); kept for
        the last gallery seen, so a query does not redo it."""
        memo = getattr(self, "_label_memo", None)
        if memo is None or memo[0] is not labels:
            pos = {c: i for i, c in enumerate(self.classes)}
            memo = self._label_memo = (labels, np.asarray([pos.get(x, -1) if x else -1 for x in labels], np.int64))
        return memo[1]


def area_resize(x: np.ndarray, side: int) -> np.ndarray:
    """(B, 3, S, S) sketch inputs -> (B, 3, side, side), each pixel the area average (Pillow's BOX),
    as `prepare_sketch` shrinks a sketch; unchanged when the side already fits."""
    if x.shape[-1] == side:
        return x
    out = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(a[0], np.float32), mode="F")
                               .resize((side, side), Image.Resampling.BOX)) for a in x])       # (B, side, side)
    return np.repeat(out[:, None], 3, axis=1).astype(np.float32)


def _classifier_classes(models_dir: Path) -> list[str]:
    from .onnx_model import read_meta
    return list(read_meta("classifier", models_dir)["classes"])
