"""The reading panel and the results grid (one piece of HTML per result list)."""
from __future__ import annotations

import html

import streamlit as st

from sbir_core.backends.base import Backend, SearchResult
from sbir_core.data.classes import display
from sbir_core.gallery import Gallery

from .canvas import query_name
from .cards import (
    UNLIKELY_KIND,
    CardScores,
    card_label,
    card_scores,
    kind_probabilities,
    photo_class_confidence,
    score_kind,
    try_classes,
    unlikely_from,
)
from .catalogue import Thumbnails
from .reading import Reading, SearchOutcome, hits
from .session import current_sketch


def _pick_target() -> None:
    """A try-chip was clicked: that class becomes the drawing's known class (results get ✓/✗)."""
    pick = st.session_state.get("try_pick")
    st.session_state["target"] = pick
    s = current_sketch()
    if s is not None and s["source"] == "drawing":
        s["label"] = pick


def try_chips(gallery: Gallery, backend: Backend | None, label: str = "Try drawing") -> None:
    """Clickable chips naming classes this gallery has photos of ("try: apple · fish · cup …")."""
    known = backend.meta.get("classes") if backend is not None else None
    options = try_classes(gallery.labels, known)
    if not options:
        return
    target = st.session_state.get("target")
    if target and target not in options:
        options = [target] + options[:-1]
    st.pills(label, options, format_func=display, key="try_pick", on_change=_pick_target,
             default=target if target in options else None)


def reading_panel(outcome: SearchOutcome, gallery: Gallery, backend: Backend | None, reading: Reading | None) -> None:
    """Next to the canvas, above the results: what the backend sees (its top classes, or the classes
    of the nearest photos), the cGAN's imaginary photo, and the query when it is not the canvas."""
    s = current_sketch()
    r = outcome.result
    imaginary = r.extras.get("imaginary") if r is not None else None
    show_query = s is not None and s["source"] != "drawing"
    with st.container(border=True, key="reading"):
        if s is None or r is None:
            st.markdown("**Draw something** – the photos update after every stroke.")
            if outcome.error and not outcome.blank:
                st.error(outcome.error)
            try_chips(gallery, backend)
            return
        pics = [x for x in (imaginary is not None and "imaginary", show_query and "query") if x]
        if pics:
            text_col, *pic_cols = st.columns([3] + [1] * len(pics), vertical_alignment="center")
        else:
            text_col, pic_cols = st.container(), []
        with text_col:
            line = reading.text() if reading is not None else ""
            if line:
                st.markdown(f"<div class='sketch-reading'>{line}</div>", unsafe_allow_html=True)
            elif score_kind(backend) == "rank":
                st.markdown("Random ranking: this baseline does not look at the sketch.")
            else:
                st.markdown("This gallery's photos have no classes, so there is no class to name.")
            target = s.get("label")
            if reading is not None and reading.kind == "classes" and target:
                ok = reading.recognised == target
                st.caption(("✅ Recognised as " if ok else "❌ Not recognised as ") + display(target))
        for kind, col in zip(pics, pic_cols):
            with col:
                if kind == "imaginary":
                    st.image(imaginary, caption="imagined photo", width="stretch")
                else:
                    st.image(s["png"], caption=query_name(s).replace("the example ", "example "), width="stretch")
        if reading is not None and reading.missing:
            st.warning(f"No {display(reading.recognised)} photos in this gallery — closest matches:")
            c1, c2 = st.columns([3, 2], vertical_alignment="center")
            with c1:
                try_chips(gallery, backend, "This gallery has")
            c2.page_link("pages/galleries.py", label="Galleries", icon="🖼️")


def card_texts(result: SearchResult, backend: Backend | None, gallery: Gallery) -> CardScores:
    """Scores that mean something on every card (see `card_scores`)."""
    kind = score_kind(backend)
    conf = None
    if kind == "probability" and len(result.ids):
        try:
            conf = photo_class_confidence(backend, gallery, result.indices)
        except Exception:  # scores are a nicety: without them the cards still show the photos
            conf = None
    return card_scores(result, kind, conf)


def result_grid(result: SearchResult, thumbs: Thumbnails, columns: int, label: str | None = None,
                max_items: int | None = None, compact: bool = False, gallery: Gallery | None = None,
                backend: Backend | None = None, key: str = "results") -> None:
    """Photo cards with label (class, else caption) and a score that means something; ✓/✗ when the
    sketch's class is known. One piece of HTML (a CSS grid of cards, thumbnails inline as data: URLs
    encoded once per gallery): a new result is one element for the browser to swap, not dozens of
    columns, containers and images to fetch. On a phone the grid keeps two or three photos per row."""
    correct = hits(result, label)
    n = len(result.ids) if max_items is None else min(max_items, len(result.ids))
    scores = card_texts(result, backend, gallery) if gallery is not None else None
    unlikely = None if compact or gallery is None else unlikely_from(kind_probabilities(result, backend))
    cards = []
    for i in range(n):
        if i == unlikely:
            cards.append(f"<div class='grid-divider'>Less likely below: the reading gives each of these kinds "
                         f"under {UNLIKELY_KIND:.0%}</div>")
        gi = int(result.indices[i])
        name = card_label(result.labels[i], gallery.display_label(gi) if gallery is not None else None)
        mark = "" if correct is None else ("✅ " if correct[i] else "❌ ")
        score = scores.texts[i] if scores is not None else f"#{i + 1}"
        title = html.escape(name, quote=True)
        text = (f"<div class='card-name compact' title='{title}'>{mark}{html.escape(name)}</div>" if compact else
                f"<div class='card-name' title='{title}'>{mark}{html.escape(name)}</div>"
                f"<div class='card-score'>{score}</div>")
        muted = " unlikely" if unlikely is not None and i >= unlikely else ""
        cards.append(f"<div class='result-card{' compact' if compact else ''}{muted}'>"
                     f"<img src='{thumbs.src(gi)}' alt='{title}'>{text}</div>")
    with st.container(key=key):
        if cards:
            st.markdown(f"<div class='result-grid' style='--cols: {max(1, columns)}'>{''.join(cards)}</div>",
                        unsafe_allow_html=True)
    if scores is not None and not compact:
        st.caption(scores.note)


def latency_text(result: SearchResult) -> str:
    t = result.extras.get("timings_ms", {})
    return (f"{t.get('total', 0):.0f} ms (preprocess {t.get('preprocess', 0):.0f}, "
            f"encode {t.get('encode', 0):.0f}, search {t.get('search', 0):.0f})")
