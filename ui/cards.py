"""What the result cards say: scores that mean something, names, the 'unlikely' divider, suggested
kinds. No Streamlit.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from sbir_core.backends.base import Backend, SearchResult
from sbir_core.data.classes import display
from sbir_core.gallery import Gallery


def score_kind(backend: Backend | None) -> str:
    """How a backend's scores read on a card (`Backend.card_score`); 'rank' when no backend is known."""
    return backend.card_score if backend is not None else "rank"


def photo_class_confidence(backend: Backend, gallery: Gallery, indices: Sequence[int]) -> np.ndarray:
    """The within-kind factor of the result cards' scores (`Backend.card_confidence`)."""
    return backend.card_confidence(gallery.features(backend), gallery.labels, np.asarray(indices, dtype=np.int64))


UNLIKELY_KIND = 0.02    # a result photo whose kind the reading gives less than this is marked "unlikely"


def kind_probabilities(result: SearchResult, backend: Any) -> np.ndarray | None:
    """P(the sketch shows each result photo's kind), where the backend reads the sketch's kind: a
    classifier's scores (its label lookup) or `instance`'s stage 1; None for the other backends."""
    if "class_probability" in result.extras:
        return np.asarray(result.extras["class_probability"], dtype=np.float64)
    if score_kind(backend) == "probability":
        return np.asarray(backend.plain_scores(np.asarray(result.scores, dtype=np.float64)))
    return None


def unlikely_from(kind_probability: np.ndarray | None, floor: float = UNLIKELY_KIND) -> int | None:
    """Where a ranked list runs into kinds the reading gives under `floor` (a house's list ending in
    horses): the first such position after at least one likely photo, so the grid can say so there.
    None when there is no such place (all likely, no reading, or nothing likely at all)."""
    if kind_probability is None:
        return None
    below = np.flatnonzero(np.asarray(kind_probability) < floor)
    return int(below[0]) if len(below) and below[0] > 0 else None


@dataclass
class CardScores:
    """The text under each result card, and one line saying what it means."""
    texts: list[str]
    note: str


def card_scores(result: SearchResult, kind: str, photo_confidence: Sequence[float] | None = None) -> CardScores:
    """Per-card scores that mean something: cosine similarity (embedding backends), P(class) x the
    photo's within-class confidence (classifiers), or the rank alone - never one number on every
    card: when the shown values are all equal, the cards show their rank and the note says why."""
    n = len(result.ids)
    ranks = [f"#{i + 1}" for i in range(n)]
    if kind == "rank" or n == 0:
        return CardScores(ranks, "Random ranking: the order means nothing, so no score is shown.")
    s = np.asarray(result.scores, dtype=np.float64)
    if kind == "probability":
        conf = np.asarray(photo_confidence if photo_confidence is not None else np.ones(n), dtype=np.float64)
        values, word = s * conf, "match"
        note = ("Card scores: P(the sketch shows the photo's kind), × how sure the photo labeller is of "
                "the kind for a photo without a label.")
        shown = [f"{v:.0%}" for v in values]
    elif kind == "mixed":
        values, word = s, "similarity"
        note = ("Card scores: cosine similarity of the imagined photo and the photo (1 = same direction). "
                "The order also weighs P(the sketch shows the photo's class), so photos of the class the "
                "sketch is read as come first.")
        shown = [f"{v:.2f}" for v in values]
    else:
        values, word = s, "similarity"
        note = "Card scores: cosine similarity of sketch and photo in the backend's space (1 = same direction)."
        shown = [f"{v:.2f}" for v in values]
    if n > 1 and len(set(shown)) == 1:
        return CardScores(ranks, f"All {n} shown have the same {word} ({shown[0]}): cards show their rank.")
    return CardScores([f"#{i + 1} · {v}" for i, v in enumerate(shown)], note)


def card_label(label: str | None, caption: str | None = None, max_chars: int = 38) -> str:
    """What a result card is called: its class in words, else its display name or caption (shortened,
    see `Gallery.display_label`), else 'photo'."""
    if label:
        return display(label)
    text = (caption or "").strip().rstrip(".")
    if not text:
        return "photo"
    return text if len(text) <= max_chars else text[: max_chars - 1].rstrip() + "…"


def try_classes(labels: Sequence[str | None], known: Sequence[str] | None = None, n: int = 8) -> list[str]:
    """Classes to suggest drawing ("try: apple · fish …"): the gallery's classes with the most photos
    (that the backend can recognise, when its vocabulary is known), ties in alphabetical order."""
    counts: dict[str, int] = {}
    for lab in labels:
        if lab:
            counts[lab] = counts.get(lab, 0) + 1
    ok = set(known) if known else None
    ranked = sorted((c for c in counts if ok is None or c in ok), key=lambda c: (-counts[c], c))
    return ranked[:n]


def grid_columns(width: float, most: int = 4, card: float = 115.0) -> int:
    """Cards per row in a column `width` px wide: as many as fit at about `card` px each, 2 to `most`."""
    return int(max(2, min(most, width // card)))


def first_k(result: SearchResult, k: int) -> SearchResult:
    """The first k of a ranking (the app ranks the whole gallery once and shows the top)."""
    return SearchResult(result.ids[:k], result.scores[:k], result.labels[:k], result.indices[:k], result.extras)
