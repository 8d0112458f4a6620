"""The `classifier` backend: classify the sketch, then look photos up by label."""
from __future__ import annotations

import copy
from typing import Any, Sequence

import numpy as np

from ..data.preprocess import ImageInputError, sketch_input
from ..teach import MAX_EXAMPLES, Imprint, KindEdits, TeachError, kind_name
from .base import Backend, register_backend
from .embedding import OnnxBackend

WITHIN_CLASS = 1e-9   # weight of the photo classifier's confidence (in float64): orders photos inside one
                      # class only, as long as two classes' probabilities differ by more than this
STORE_WITHIN_CLASS = 1e-4   # the same tie-break in a vector store's float32 inner product, as a relative
                            # factor (1 + this x confidence): float32 resolves ~1e-7, so confidences 0.001
                            # apart stay ordered; classes whose scores lie within 0.01 % may swap
FIRST_ROW = 4          # results a visitor sees first (one row of the result grid; hit@4 in the benchmark)
FIRST_ROW_LIFT = 2.0   # added to the scores of the photos the first-row hedge picks: above any plain score (<= 1)
HEDGE_CLASSES = 12     # the hedge looks at this many of the most probable classes (a store: one query each, at most)


def photo_confidence(features: np.ndarray, lab: np.ndarray) -> np.ndarray:
    """(N,) the photo labeller's P(the kind each photo is filed under); 1 for a taught kind (the
    labeller has no column for it: only a photo's own label files it there)."""
    inside = lab < features.shape[1]
    return np.where(inside, features[np.arange(len(lab)), np.where(inside, lab, 0)], 1.0)


@register_backend("classifier")
class ClassifierBackend(OnnxBackend):
    """Score of a photo = P(sketch is of the photo's class) + a tie-break by the photo classifier's
    confidence in that class. So photos of the predicted class come first, then those of the next
    most probable classes. An unlabelled photo takes the photo classifier's label, and its score is
    weighted by how sure that classifier is (the chance it is of the class): a photo known to be an
    apple ranks above one guessed to be an apple.

    First-row hedge (metadata `first_row_hedge`, a share chosen on validation data by
    `python -m sbir_core.train.first_row`): when the sketch reads as several classes, the first row
    holds the best photo of each class whose best photo scores at least that share of the top photo's
    score (up to 4 classes, most probable first), so a visitor who drew a mug the model reads as
    "cup 26 % · mug 25 %" sees both; the rest follow in the plain order. `score` lifts those photos
    by FIRST_ROW_LIFT (so every ranking - evaluation, Compare, the app - sees the same order);
    `plain_scores` takes the lift off again for what cards show."""

    edits = KindEdits()        # kinds taught and forgotten in this copy (sbir_core.teach)
    card_score = "probability"  # P(the sketch shows the photo's kind), see card_confidence

    @property
    def classes(self) -> list[str]:
        """The kinds the reading scores: the trained ones, then any taught ones."""
        return self.edits.classes(self.meta["classes"])

    def read_kinds(self, x: np.ndarray) -> np.ndarray:
        """(B, 3, S, S) sketch inputs -> (B, len(classes)) P(kind), taught kinds included."""
        out = self.sketch_model(x)
        if not self.edits:
            return out[0].astype(np.float32)
        if getattr(self, "_plan", None) is None:
            self._plan = self.edits.plan(self.meta["classes"])
        return self.edits.read(out[0], out[1], out[2], self._plan, self._imprint())

    @property
    def can_teach(self) -> bool:
        return "imprint" in self.meta

    def teach(self, kind: str, sketches: Sequence[Any]) -> Backend:
        name = kind_name(kind)
        if not isinstance(sketches, (list, tuple)) or not sketches:
            raise TeachError(f"Draw at least one example of {name}.")
        if len(sketches) > MAX_EXAMPLES:
            raise TeachError(f"{MAX_EXAMPLES} examples are plenty: pick the clearest.")
        inputs = []
        for n, s in enumerate(sketches, 1):
            try:
                inputs.append(sketch_input(s, self.preprocess))
            except ImageInputError as e:
                raise TeachError(f"Example {n}: {e}") from None
        out = self.sketch_model(np.stack(inputs))
        return self._edited(self.edits.teach(name, self._imprint().prototype(out[2])))

    def forget(self, kind: str) -> Backend:
        name = kind_name(kind)
        if name not in self.classes or name in self.edits.forgotten:
            raise TeachError(f"It does not read {name!r}, so there is nothing to forget.")
        if len(self.classes) - len(self.edits.forgotten) <= 2:
            raise TeachError("It has to keep at least two kinds.")
        return self._edited(self.edits.forget(name))

    def taught(self) -> list[str]:
        return self.edits.kinds()

    def _imprint(self) -> Imprint:
        if getattr(self, "_imprint_memo", None) is not None:
            return self._imprint_memo
        if "imprint" not in self.meta:
            raise TeachError(f"{self.name} cannot be taught kinds: its model has no imprint calibration "
                             "(`python -m sbir_core.train.imprint` makes the classifier's).")
        self._imprint_memo = Imprint.from_meta(self.meta["imprint"], self.models_dir)
        return self._imprint_memo

    def _edited(self, edits: KindEdits) -> Backend:
        new = copy.copy(self)              # shares the ONNX sessions; its own kinds and memos
        new.edits, new._class_positions, new._photo_memo, new._plan = edits, None, None, None
        return new

    def encode_photos(self, x: np.ndarray) -> np.ndarray:
        """The shared photo labeller's P(kind), over this model's own classes (a prefix of the
        vocabulary: `classifier_small` reads fewer kinds than the labeller names)."""
        return self.photo_model(x)[0][:, :len(self.meta["classes"])].astype(np.float32)  # (B, C) probabilities

    def photo_kinds(self, features: np.ndarray) -> np.ndarray:
        return features                                                                  # (N, C) the labeller's P(kind)

    def encode_sketches(self, x: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        p = self.read_kinds(x)                                                           # (B, C [+ taught])
        classes = self.classes
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

    def card_confidence(self, features: np.ndarray, labels: Sequence[str | None], indices: np.ndarray) -> np.ndarray:
        """How sure we are that each result photo shows the kind it is filed under: 1 for a photo with
        its own label (the labeller's doubt about a labelled photo would show a right photo as "0 %")
        and for a kind the labeller was not trained on (`photo_classes` in the metadata); an
        unlabelled photo takes the labeller's P(the kind it filed the photo under)."""
        idx = np.asarray(indices, dtype=np.int64)
        unlabelled = np.array([not labels[i] for i in idx], dtype=bool)
        if not unlabelled.any():
            return np.ones(len(idx))
        lab = self.photo_labels(features, labels)[idx]
        guessed = photo_confidence(features[idx], lab).astype(np.float64)
        known = self.meta.get("photo_classes")
        if known:
            known = set(known)
            guessed = np.where([self.classes[c] in known for c in lab], guessed, 1.0)
        return np.where(unlabelled, guessed, 1.0)

    @property
    def class_positions(self) -> dict[str, int]:
        if getattr(self, "_class_positions", None) is None:
            self._class_positions = {c: i for i, c in enumerate(self.classes)}
        return self._class_positions

    @property
    def first_row_hedge(self) -> float:
        """The hedge's share (0 = off: the plain label-lookup order)."""
        return float(self.meta.get("first_row_hedge", 0.0))

    def score(self, queries: np.ndarray, features: np.ndarray, labels: Sequence[str | None]) -> np.ndarray:
        lab, weight = self._photo_classes(features, labels)                              # (N,), (N,)
        conf = photo_confidence(features, lab)                                           # (N,)
        plain = queries[:, lab].astype(np.float64) * weight + WITHIN_CLASS * conf[None, :]   # (Q, N)
        if not self.first_row_hedge:
            return plain
        out = plain.copy()
        for q, s in enumerate(plain):
            order = np.argsort(-s, kind="stable")
            _, first = np.unique(lab[order], return_index=True)                          # each class's first place
            best = order[np.sort(first)]                                                 # its best photo, best first
            likely = np.argsort(-queries[q])[:HEDGE_CLASSES]
            best = best[np.isin(lab[best], likely) & (s[best] >= self.first_row_hedge * s[order[0]])]
            out[q, best[:FIRST_ROW]] += FIRST_ROW_LIFT
        return out

    def plain_scores(self, scores: np.ndarray) -> np.ndarray:
        return np.where(scores >= FIRST_ROW_LIFT, scores - FIRST_ROW_LIFT, scores)

    def store_first_row(self, store: Any, key: str, queries: np.ndarray, ids: list[str], scores: np.ndarray,
                        k: int) -> tuple[list[str], np.ndarray]:
        """The first-row hedge on a vector store's plain top k (`ids`, `scores`): each likely class's
        best photo is one more search, with the class's one-hot (its stored photos score their
        weight there), so the result is the order `score` gives in memory."""
        share = self.first_row_hedge
        if not share or not len(ids):
            return ids, scores
        p = np.asarray(queries[0], dtype=np.float64)
        top, picks = float(scores[0]), {}
        for c in np.argsort(-p)[:HEDGE_CLASSES]:
            if p[c] < share * top:                   # a class's best score is at most its probability
                break
            onehot = np.zeros(2 * len(p), np.float32)
            onehot[len(p) + c] = 1.0
            best, weight = store.search(key, onehot, 1)
            if len(best) and weight[0] > 0 and p[c] * weight[0] >= share * top:
                picks[best[0]] = p[c] * float(weight[0])
        first = sorted(picks, key=picks.get, reverse=True)[:FIRST_ROW]
        rest = [(i, s) for i, s in zip(ids, scores) if i not in first]
        return (first + [i for i, _ in rest])[:k], np.asarray([picks[i] + FIRST_ROW_LIFT for i in first]
                                                              + [s for _, s in rest], np.float32)[:k]

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
        if len(self.classes) != len(self.meta["classes"]):
            raise TeachError("Kinds taught here search galleries in memory, not in a vector store.")
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
            weight = np.where(known, 1.0, photo_confidence(features, lab).astype(np.float64))
            memo = self._photo_memo = (features, labels, lab, weight)
        return memo[2], memo[3]


@register_backend("classifier_small")
class SmallClassifierBackend(ClassifierBackend):
    """The reference system's small CNN (3 conv+pool, 2 dense) with the same label lookup."""
