"""One search as the app runs it (never a traceback) and what the backend makes of the sketch: the
reading and the Compare page's summary rows. No Streamlit.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from sbir_core.backends import ModelFileError
from sbir_core.backends.base import Backend, SearchResult
from sbir_core.data.classes import display
from sbir_core.data.preprocess import BlankSketchError, ImageInputError
from sbir_core.gallery import Gallery

log = logging.getLogger(__name__)


@dataclass
class SearchOutcome:
    """A search's result, or the message to show instead (never a traceback)."""
    backend: str
    result: SearchResult | None = None
    error: str | None = None
    blank: bool = False               # nothing drawn yet: a hint, not an error

    @property
    def latency_ms(self) -> float | None:
        return None if self.result is None else float(self.result.extras["timings_ms"]["total"])


def safe_search(backend: Backend, sketch: Any, gallery: Gallery, k: int = 20,
                threshold: float | None = None) -> SearchOutcome:
    """`backend.search` (top k), or with a threshold `search_within` (every photo at least that
    similar, at most k shown), with every failure turned into a message for the user."""
    try:
        if threshold is not None and supports_threshold(backend):
            r = backend.search_within(sketch, gallery, threshold)
            r.extras["within"] = len(r.ids)
            return SearchOutcome(backend.name, SearchResult(r.ids[:k], r.scores[:k], r.labels[:k], r.indices[:k],
                                                            r.extras))
        return SearchOutcome(backend.name, backend.search(sketch, gallery, k))
    except BlankSketchError as e:
        return SearchOutcome(backend.name, error=str(e), blank=True)
    except (ImageInputError, ModelFileError) as e:
        return SearchOutcome(backend.name, error=str(e))
    except Exception as e:  # the app's last line of defence: log it, show one line (no advice we cannot stand by)
        log.exception("search failed")
        return SearchOutcome(backend.name, error=f"The search failed unexpectedly ({type(e).__name__}: {e}). "
                                                 "Try again, or pick another backend or gallery.")


def supports_threshold(backend: Backend) -> bool:
    """Embedding backends also retrieve by distance (every photo above a cosine similarity)."""
    return backend.default_threshold is not None


def hits(result: SearchResult, label: str | None) -> list[bool] | None:
    """Which results are of the sketch's class (None when the class is unknown)."""
    if not label:
        return None
    return [lab == label for lab in result.labels]


@dataclass
class Reading:
    """What a backend makes of the sketch, in words, for the line next to the canvas.

    kind "classes": the backend classifies; `items` are (class, probability), `recognised` its top class.
    kind "nearest": an embedding backend; `items` are (class, best similarity of a photo of that class).
    kind "none": nothing to say (random ranking, or no labelled photo among the results)."""
    kind: str
    items: list[tuple[str, float]] = field(default_factory=list)
    recognised: str | None = None
    missing: bool = False              # the recognised class has no photo in this gallery

    def text(self) -> str:
        if self.kind == "classes":
            return "I see: " + " · ".join(f"{display(c)} {p:.0%}".replace("%", " %") for c, p in self.items)
        if self.kind == "nearest":
            return "Closest photos: " + " · ".join(f"{display(c)} ({s:.2f})" for c, s in self.items)
        return ""


def read_sketch(result: SearchResult, classes_here: set[str] | None, kind: str = "similarity", n: int = 3) -> Reading:
    """The reading of one search: a classifier's top classes (and whether the gallery has photos of
    the first; `classes_here` None: unknown, never said missing), else the classes of the nearest photos
    with their best similarity. `result` should rank the whole gallery, so that every class's best photo is in it."""
    top = result.extras.get("top_classes")
    if top:
        items = [(str(c), float(p)) for c, p in list(top)[:n]]
        first = items[0][0]
        return Reading("classes", items, first, missing=classes_here is not None and first not in classes_here)
    if kind == "rank":
        return Reading("none")
    best: dict[str, float] = {}
    for lab, s in zip(result.labels, np.asarray(result.scores, dtype=float)):
        if lab and lab not in best:
            best[lab] = float(s)
            if len(best) == n:
                break
    return Reading("nearest", list(best.items())) if best else Reading("none")


@dataclass
class CompareRow:
    """One backend's line in the Compare page's summary table."""
    name: str
    title: str
    sees: str                      # its top classes, or the classes of its nearest photos
    hits: int | None               # results of the sketch's class in its top K (None: class unknown)
    k: int
    latency_ms: float | None
    baseline: bool = False
    quality: float = 0.0           # its mAP@all in the shipped evaluation (orders rows while the class is unknown)


def compare_order(rows: Sequence[CompareRow]) -> list[CompareRow]:
    """Best first, baselines last: by hits in the top K once the class is known (ties: faster first),
    else by the shipped evaluation's mAP@all."""
    def key(r: CompareRow):
        if r.hits is not None:
            return (r.baseline, -r.hits, -r.quality, r.latency_ms or 0.0)
        return (r.baseline, -r.quality, r.latency_ms or 0.0)
    return sorted(rows, key=key)


def reading_summary(reading: "Reading | None", label: str | None = None, n: int = 3) -> str:
    """A reading in a few words for a table cell: 'bicycle 95 % · car 2 %', or 'cup · hat · fish';
    once the sketch's class is known, ✅/❌ says whether the first class is it."""
    if reading is None or reading.kind == "none" or not reading.items:
        return "–"
    if reading.kind == "classes":
        text = " · ".join(f"{display(c)} {p:.0%}" for c, p in reading.items[:n])
    else:
        text = " · ".join(display(c) for c, _ in reading.items[:n])
    if label:
        text = ("✅ " if reading.items[0][0] == label else "❌ ") + text
    return text
