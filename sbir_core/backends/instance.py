"""The `instance` backend: the right kind of object first, then the very photo that was drawn.

Two stages in one score. Stage 1 is the shipped `classifier` backend's class posterior (its ONNX
heads, shared, not copied): P(the sketch shows the photo's class), with an unlabelled photo's class
guessed by the photo classifier and weighted by its confidence, exactly as `classifier` ranks.
Stage 2 orders photos by an instance embedding that keeps the spatial layout of the picture
(`sbir_core.nets.instance`): cosine similarity of sketch and photo. The score is
log P(class) + w * cosine, with w chosen on the validation split (`fusion_weight` in the metadata;
small: a photo of a less likely class overtakes only on a clearly closer match). One run of the
classifier's sketch trunk file feeds both the classifier's sketch head and the instance sketch head.
Retrieval by distance (`search_within`) keeps every photo whose instance cosine reaches the
threshold, in the two-stage order; cards show that cosine.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..config import MODELS_DIR
from ..index import l2_normalise
from .base import GalleryLike, SearchResult, check_gallery, register_backend
from .embedding import OnnxBackend
from .onnx_model import REBUILD_HINT, ModelFileError, OnnxModel, file_fingerprint

LOG_FLOOR = 1e-12      # log P(class) of a class the classifier rules out entirely


def kinds_within(kind: np.ndarray, gate: float) -> np.ndarray:
    """(..., N) P(sketch shows photo n's kind) -> which photos the class gate lets through: kinds the
    reading gives at least `gate`, and always the gallery's likeliest kind (a doubtful reading still
    finds something). Retrieval by distance serves it; the trainer and `score_instance` measure it."""
    return kind >= np.minimum(gate, kind.max(axis=-1, keepdims=True, initial=0.0))


@register_backend("instance")
class InstanceBackend(OnnxBackend):
    """Features per photo: [class probabilities (C) | instance embedding (D)]; per sketch the same."""

    # Where retrieval by distance starts in the app (instance cosines are low: the drawn photo's is
    # mostly 0.15-0.3; at the other backends' 0.5 nothing comes back): `default_threshold` in the
    # metadata, chosen on the validation split by the trainer (docs/instance.md); this when absent.
    default_threshold = 0.2

    def __init__(self, threads: int | None = None, models_dir: Path | None = None):
        super().__init__(threads, models_dir)
        models_dir = models_dir or MODELS_DIR
        for f in ("class_sketch_model", "class_photo_model"):
            v = self.meta[f]
            if not (isinstance(v, str) and v and Path(v).name == v and v not in (".", "..")):
                raise ModelFileError(f"model metadata {self.name}.json: field '{f}' must be a model file name in the "
                                     f"models folder, got {v!r:.80}; {REBUILD_HINT}")
        if "classes" not in self.meta:
            raise ModelFileError(f"model metadata {self.name}.json: field 'classes' is missing; {REBUILD_HINT}")
        self.class_sketch_head = OnnxModel.load(models_dir / self.meta["class_sketch_model"], threads)
        self.class_photo_head = OnnxModel.load(models_dir / self.meta["class_photo_model"], threads)
        self.n_classes = len(self.meta["classes"])
        for head in (self.class_sketch_head, self.class_photo_head):
            n_out = head.session.get_outputs()[0].shape[-1]
            if isinstance(n_out, int) and n_out != self.n_classes:
                raise ModelFileError(f"model metadata {self.name}.json: field 'classes' lists {self.n_classes} "
                                     f"classes but {head.path.name} scores {n_out}; {REBUILD_HINT}")
        self.fusion_weight = float(self.meta.get("fusion_weight", 0.0))
        self.default_threshold = float(self.meta.get("default_threshold", self.default_threshold))
        self.class_gate = float(self.meta.get("class_gate", 0.0))
        self._key += "-" + file_fingerprint(self.class_photo_head.path)[:8]
        self.class_positions = {c: i for i, c in enumerate(self.meta["classes"])}

    # -- encoders: one trunk run, two heads ----------------------------------------------------
    def encode_photos(self, x: np.ndarray) -> np.ndarray:
        trunk, head = self.photo_model.models
        f = trunk(x)[0]
        out = head(f)                  # (embedding,) or, on an earlier grid, (embedding, whole-trunk features)
        probs = self.class_photo_head(out[1] if len(out) > 1 else f)[0].astype(np.float32)
        return np.concatenate([probs, l2_normalise(out[0]).astype(np.float32)], axis=1)           # (B, C + D)

    def encode_sketches(self, x: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        trunk, head = self.sketch_model.models
        f = trunk(x)[0]
        p = self.class_sketch_head(f)[0].astype(np.float32)
        q = np.concatenate([p, l2_normalise(head(f)[0]).astype(np.float32)], axis=1)             # (B, C + D)
        classes = self.meta["classes"]
        top = np.argsort(-p[0])[:5]
        return q, {"top_classes": [(classes[i], float(p[0, i])) for i in top], "query": q[:1]}

    # -- scores --------------------------------------------------------------------------------
    def split(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, C + D) -> class probabilities (N, C), instance embedding (N, D)."""
        return features[:, :self.n_classes], features[:, self.n_classes:]

    def photo_kinds(self, features: np.ndarray) -> np.ndarray:
        return self.split(features)[0]                                                   # (N, C) the labeller's P(kind)

    def photo_classes(self, features: np.ndarray, labels: Sequence[str | None]) -> np.ndarray:
        """(N,) class index per photo: its own label when the classifier knows that class, else the
        photo classifier's guess (as `classifier` does). Not named `photo_labels`: the app would
        then read this backend's card scores as probabilities; they are cosine similarities."""
        idx = self.split(features)[0].argmax(axis=1)
        for n, lab in enumerate(labels):
            if lab is not None and lab in self.class_positions:
                idx[n] = self.class_positions[lab]
        return idx

    def similarity(self, queries: np.ndarray, features: np.ndarray) -> np.ndarray:
        """(Q, N) instance cosine similarity of sketches and photos."""
        return self.split(queries)[1] @ self.split(features)[1].T

    def kind_probability(self, queries: np.ndarray, features: np.ndarray, labels: Sequence[str | None],
                         indices: np.ndarray | None = None) -> np.ndarray:
        """(Q, N) P(the sketch shows photo n's kind): stage 1, and what the class gate reads; for the
        photos at `indices` only (Q, k) when given."""
        lab, weight = self._photo_classes(features, labels)                              # (N,), (N,)
        if indices is not None:
            lab, weight = lab[indices], weight[indices]
        return queries[:, lab].astype(np.float64) * weight

    def score(self, queries: np.ndarray, features: np.ndarray, labels: Sequence[str | None]) -> np.ndarray:
        p_class = self.kind_probability(queries, features, labels)                       # (Q, N) stage 1
        w = max(self.fusion_weight, 1e-6)              # 0 would be class order alone; a tiny w breaks its ties
        return np.log(np.maximum(p_class, LOG_FLOOR)) + w * self.similarity(queries, features)

    def _photo_classes(self, features: np.ndarray, labels: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
        memo = getattr(self, "_instance_memo", None)
        if memo is None or memo[0] is not features or memo[1] is not labels:
            lab = self.photo_classes(features, labels)
            probs = self.split(features)[0]
            known = np.asarray([x is not None and x in self.class_positions for x in labels], dtype=bool)
            weight = np.where(known, 1.0, probs[np.arange(len(lab)), lab].astype(np.float64))
            memo = self._instance_memo = (features, labels, lab, weight)
        return memo[2], memo[3]

    # -- search: two-stage order, cards show the instance cosine --------------------------------
    def search(self, sketch: Any, gallery: "GalleryLike", k: int = 20) -> SearchResult:
        r = super().search(sketch, gallery, k)
        return self._with_cosine(r, sketch, gallery)

    def _with_cosine(self, r: SearchResult, sketch: Any, gallery: "GalleryLike") -> SearchResult:
        q = r.extras.pop("query")
        features = gallery.features(self)
        cos = self.similarity(q, features[r.indices])[0]                                 # (k,) the results only
        r.extras["rank_scores"] = r.scores
        r.extras["class_probability"] = self.kind_probability(q, features, gallery.labels, r.indices)[0]
        return SearchResult(r.ids, cos.astype(np.float32), r.labels, r.indices, r.extras)

    def search_within(self, sketch: Any, gallery: "GalleryLike", threshold: float) -> SearchResult:
        """Retrieval by distance: every photo whose instance cosine similarity is at least
        `threshold` and whose kind passes the class gate (`kinds_within`), in the two-stage order;
        how many there are is the result's length. Without the gate a drawn sun brought flowers and
        clocks (the same layout), not one sun."""
        threshold = self.check_threshold(threshold)
        check_gallery(gallery)
        r = self.search(sketch, gallery, k=len(gallery))
        keep = (r.scores >= threshold) & kinds_within(r.extras["class_probability"], self.class_gate)
        for key in ("rank_scores", "class_probability"):
            r.extras[key] = r.extras[key][keep]
        return SearchResult([i for i, k in zip(r.ids, keep) if k], r.scores[keep],
                            [lab for lab, k in zip(r.labels, keep) if k], r.indices[keep], r.extras)
