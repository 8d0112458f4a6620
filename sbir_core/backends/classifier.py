"""The `classifier` backend: classify the sketch, then look photos up by label."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .base import register_backend
from .embedding import OnnxBackend

WITHIN_CLASS = 1e-9   # weight of the photo classifier's confidence (in float64): orders photos inside one
                      # class only, as long as two classes' probabilities differ by more than this
STORE_WITHIN_CLASS = 1e-4   # the same tie-break in a vector store's float32 inner product, as a relative
                            # factor (1 + this x confidence): float32 resolves ~1e-7, so confidences 0.001
                            # apart stay ordered; classes whose scores lie within 0.01 % may swap


@register_backend("classifier")
class ClassifierBackend(OnnxBackend):
    """Score of a photo = P(sketch is of the photo's class) + a tie-break by the photo classifier's
    confidence in that class. So photos of the predicted class come first, then those of the next
    most probable classes. An unlabelled photo takes the photo classifier's label, and its score is
    weighted by how sure that classifier is (the chance it is of the class): a photo known to be an
    apple ranks above one guessed to be an apple."""

    def encode_photos(self, x: np.ndarray) -> np.ndarray:
        return self.photo_model(x)[0].astype(np.float32)                               # (B, C) probabilities

    def encode_sketches(self, x: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        p = self.sketch_model(x)[0].astype(np.float32)                                   # (B, C)
        classes = self.meta["classes"]
        top = np.argsort(-p[0])[:5]
        return p, {"top_classes": [(classes[i], float(p[0, i])) for i in top]}

    def photo_labels(self, features: np.ndarray, labels: Sequence[str | None]) -> np.ndarray:
        """(N,) class index per photo: its own label when the model knows that class, else predicted.
        Indices are the model's own (its metadata's `classes`), which may be fewer than the vocabulary."""
        idx = features.argmax(axis=1)
        position = self.class_positions
        for n, lab in enumerate(labels):
            if lab is not None and lab in position:
                idx[n] = position[lab]
        return idx

    @property
    def class_positions(self) -> dict[str, int]:
        if getattr(self, "_class_positions", None) is None:
            self._class_positions = {c: i for i, c in enumerate(self.meta["classes"])}
        return self._class_positions

    def score(self, queries: np.ndarray, features: np.ndarray, labels: Sequence[str | None]) -> np.ndarray:
        lab, weight = self._photo_classes(features, labels)                              # (N,), (N,)
        conf = features[np.arange(len(lab)), lab]                                        # (N,)
        return queries[:, lab].astype(np.float64) * weight + WITHIN_CLASS * conf[None, :]   # (Q, N)

    def store_vectors(self, features: np.ndarray, labels: Sequence[str | None]) -> np.ndarray:
        """(N, 2C): the class posteriors (kept for `features_from_store`), then the photo's class as a
        one-hot scaled by its weight and tie-break, so the inner product with `store_query` is
        P(sketch's class = photo's class) x weight x (1 + 1e-4 x confidence): `score` in float32."""
        features = np.asarray(features, dtype=np.float32)
        lab = self.photo_labels(features, labels)                                        # (N,)
        known = np.asarray([x is not None and x in self.class_positions for x in labels], dtype=bool)
        conf = features[np.arange(len(lab)), lab]                                        # (N,)
        onehot = np.zeros_like(features)
        onehot[np.arange(len(lab)), lab] = np.where(known, 1.0, conf) * (1.0 + STORE_WITHIN_CLASS * conf)
        return np.concatenate([features, onehot], axis=1)

    def store_query(self, queries: np.ndarray) -> np.ndarray:
        q = np.asarray(queries[0], dtype=np.float32).reshape(-1)                         # (C,)
        return np.concatenate([np.zeros_like(q), q])

    def features_from_store(self, vectors: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(vectors[:, :vectors.shape[1] // 2])

    def _photo_classes(self, features: np.ndarray, labels: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
        """Each photo's class index and score weight (1 if labelled, else the photo classifier's
        confidence), kept for the last gallery seen: per query they would cost more than the search."""
        memo = getattr(self, "_photo_memo", None)
        if memo is None or memo[0] is not features or memo[1] is not labels:
            lab = self.photo_labels(features, labels)
            known = np.asarray([x is not None and x in self.class_positions for x in labels], dtype=bool)
            weight = np.where(known, 1.0, features[np.arange(len(lab)), lab].astype(np.float64))
            memo = self._photo_memo = (features, labels, lab, weight)
        return memo[2], memo[3]


@register_backend("classifier_small")
class SmallClassifierBackend(ClassifierBackend):
    """The reference system's small CNN (3 conv+pool, 2 dense) with the same label lookup."""
