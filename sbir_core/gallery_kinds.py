"""What kinds of object a gallery has photos of: its labels, and for photos without one, the kind
the photo labeller reads in them when it is sure enough (`Backend.photo_kinds`); the Galleries page's
counts and search, and the reading's "No hat photos in this gallery"."""
from __future__ import annotations

from collections import Counter
from typing import Any

from .data.classes import VOCABULARY, display, normalise
from .gallery import Gallery


def filed_kinds(gallery: Gallery, backend: Any) -> list[str | None] | None:
    """Each photo's kind: its label, else the photo labeller's reading when it is at least
    `photo_label_threshold` sure (chosen on validation photos), else None: what the labeller cannot
    tell stays unlabelled, never forced into the nearest kind. A photo a saved gallery names without
    a kind (its reviewed `display` name: a goat, a gravestone) fits none and stays so.
    None when the backend does not label photos."""
    if all(gallery.labels):
        return list(gallery.labels)
    probs = backend.photo_kinds(gallery.features(backend))                             # (N, C) or None
    if probs is None:
        return None
    classes = backend.meta["classes"]           # the photo labeller's columns (never a taught kind)
    best, sure = probs.argmax(axis=1), probs.max(axis=1) >= float(backend.meta.get("photo_label_threshold", 0.0))
    reviewed = [bool(info.get("display")) for info in gallery.info] if gallery.info else [False] * len(gallery)
    return [lab or (classes[b] if ok and not seen else None)
            for lab, b, ok, seen in zip(gallery.labels, best, sure, reviewed)]


def classes_in_gallery(gallery: Gallery, backend: Any) -> set[str] | None:
    """The classes a reading can find photos of here: the photos' labels and, for unlabelled photos (your
    own, without class folders), the kinds the photo labeller files them under. None when that cannot
    be known: unlabelled photos and a backend that does not label photos."""
    kinds = filed_kinds(gallery, backend)
    return None if kinds is None else {k for k in kinds if k}


def store_summary(store: Any) -> str:
    """One line on a store gallery: where it lives, its index kind, and how many photos each backend has there."""
    counts = ", ".join(f"{key.split('-', 1)[0]} {store.count(key):,}" for key in store.keys())
    return f"Vector store {store.uri.split('?', 1)[0]} · {store.index} index · photos per backend: {counts or 'none'}"


def kinds_summary(count: dict[str, int], query: str = "") -> str:
    """Markdown: the kinds a gallery has photos of (with counts), those matching `query` when given;
    a query naming a kind of the vocabulary with no photo here says so."""
    q = normalise(query)
    shown = sorted(k for k in count if q in k)
    if q and not shown:
        known = [k for k in VOCABULARY if q in k][:5]
        return (f"No photos of {', '.join(display(k) for k in known)} here." if known
                else f"“{display(q)}” is not a kind this app knows.")
    return " · ".join(f"{display(k)} ({count[k]})" for k in shown) or "No kinds known."


def kinds_caption(gallery: Gallery, kinds: list[str | None], labeller: bool) -> str:
    """How the gallery's photos got their kinds, in one line for the Galleries page: labelled, filed
    by the photo labeller (`labeller`: one was asked), named by a caption only, or of no known kind."""
    labelled = sum(1 for x in gallery.labels if x)
    filed = sum(1 for x, k in zip(gallery.labels, kinds) if k and not x)
    named = sum(1 for x, info in zip(gallery.labels, gallery.info or [{}] * len(gallery)) if not x and info.get("display"))
    rest = len(gallery) - labelled - filed - named
    notes = [f"{filed} filed by the photo labeller from what it sees"] if filed else []
    if named:
        notes.append(f"{named} show things no kind fits (a caption names them)")
    if rest:
        notes.append(f"{rest} the labeller cannot tell" if labeller else f"{rest} without a kind")
    return f"{labelled} photos carry a kind; " + "; ".join(notes) + "." if notes else ""


def kinds_count(kinds: list[str | None]) -> Counter:
    return Counter(k for k in kinds if k)
