"""Per-server caches and per-visitor state: backends and galleries loaded once, the settings, the
current sketch and its (memoised) ranking.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import streamlit as st
from PIL import Image

from sbir_core.backends import ModelFileError, load_backend
from sbir_core.backends.base import Backend
from sbir_core.data.preprocess import ImageInputError
from sbir_core.gallery import Gallery
from sbir_core.gallery_kinds import classes_in_gallery
from sbir_core.store import store_uri

from . import teach
from .cards import first_k, score_kind
from .catalogue import Example, Thumbnails, backend_infos, example_sketches, gallery_sources, missing_gallery_message
from .reading import Reading, SearchOutcome, read_sketch, safe_search, supports_threshold

USER_GALLERY = "user"


THUMBS_DIR = Path(__file__).resolve().parents[1] / "static"   # Streamlit serves it at app/static/ (static serving on);
                                                          # shared galleries' thumbnails are written to thumbs/ in it


@st.cache_resource(show_spinner=False)
def get_backend(name: str) -> Backend:
    """One ONNX Runtime session set per backend for the whole server."""
    return load_backend(name)


@st.cache_resource(show_spinner="Opening the gallery…")
def get_shared_gallery(key: str, store: str = "") -> tuple[Gallery, Thumbnails]:
    """A gallery shared by every session; `store` (the SBIR_STORE setting) keys the cache too, so a
    changed store setting never serves the previous store's gallery."""
    for src in gallery_sources():
        if src.key == key:
            g = src.load()
            return g, Thumbnails(g, static_dir=THUMBS_DIR if st.get_option("server.enableStaticServing") else None)
    raise KeyError(key)


@st.cache_resource(show_spinner=False)
def get_examples() -> list[Example]:
    return example_sketches()


def presenter() -> bool:
    return bool(st.session_state.get("presenter", False))


def backend_picker(where: Any = None) -> None:
    """The sidebar's backend picker (into `where`, a container the app made for it, when given); the
    backends and titles as the app's last full run listed them. Sets the backend the pages read."""
    state = st.session_state
    titles = state.get("backend_titles") or {}
    (where if where is not None else st).selectbox(
        "Backend", list(titles), format_func=titles.get, key="backend_picker", on_change=keep, args=("backend",),
        help="How sketches are matched to photos; the Compare page runs them all.")
    if titles:
        state["backend"] = state.get("backend_picker") or next(iter(titles))


def keep(key: str) -> None:
    """A picker's choice into its plain session key (`backend`, `gallery_key`), which outlives pages."""
    st.session_state[key] = st.session_state[f"{key}_picker"]


def active_gallery() -> tuple[Gallery | None, Thumbnails | None, str | None]:
    """The gallery picked in the settings, its thumbnails, or a message saying why there is none."""
    key = st.session_state.get("gallery_key")
    if key == USER_GALLERY:
        g = st.session_state.get("user_gallery")
        if g is not None:
            return _with_taught_photos(g, st.session_state["user_thumbs"])
        return None, None, "Your photos are gone (the session restarted): upload them again on the Galleries page."
    if not key:
        return None, None, missing_gallery_message()
    try:
        g, thumbs = get_shared_gallery(key, store_uri() if key == "store" else "")
    except (ImageInputError, OSError, KeyError, ValueError) as e:
        return None, None, f"The gallery could not be opened ({e})."
    return _with_taught_photos(g, thumbs)


def _with_taught_photos(g: Gallery, thumbs: Thumbnails) -> tuple[Gallery, Thumbnails, None]:
    """The gallery with this session's photos of taught kinds; a line for each that could not be read."""
    g, thumbs, problems = teach.session_gallery(g, thumbs)
    for p in problems:
        st.warning(p)
    return g, thumbs, None


_LOADED: dict[str, Backend] = {}      # the backends get_backend has loaded: a dict lookup per call, not
                                      # st.cache_resource's argument hashing (~5 calls per rerun)


def backend_or_message(name: str) -> tuple[Backend | None, str | None]:
    """The backend as this session sees it (with the kinds taught here), or why it cannot be loaded
    (a message for the page, never a traceback)."""
    if name in _LOADED:
        return teach.session_backend(name, _LOADED[name]), None
    try:
        _LOADED[name] = get_backend(name)
        return teach.session_backend(name, _LOADED[name]), None
    except ModelFileError as e:
        return None, str(e)
    except ValueError as e:
        return None, str(e)


def threshold_control(backend_name: str) -> float | None:
    """For embedding backends: optionally every photo above a similarity instead of the top K."""
    backend, _ = backend_or_message(backend_name)
    if backend is None or not supports_threshold(backend):
        return None
    on, value = st.columns([1, 2])
    if not on.toggle("By similarity", key="use_threshold",
                     help="Every photo whose cosine similarity to the sketch is at least the threshold, "
                          "instead of a fixed number of results."):
        return None
    start = float(backend.default_threshold)                        # cosines mean different things per backend
    return float(value.slider("Similarity at least", 0.0, 1.0, start, 0.05, key=f"threshold_{backend_name}",
                              label_visibility="collapsed"))


def ensure_indexed(backend: Backend, gallery: Gallery) -> str | None:
    """Compute the gallery's features for this backend, with a progress bar when it takes a while
    (also while another session indexes it); a one-line warning names photos that could not be
    read. Returns the message to show instead of results when indexing failed."""
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = st.progress(0.0, text=f"Indexing {total} photos for {backend.name}…")
        bar.progress(done / max(total, 1), text=f"Indexing photos for {backend.name}: {done}/{total}")

    try:
        if gallery.store is not None:
            gallery.check_store(backend)          # a store gallery searches in its store: nothing to load
        else:
            gallery.features(backend, progress)
    except (ImageInputError, ModelFileError, OSError) as e:
        return f"The gallery could not be indexed: {e}"
    except Exception as e:  # never a traceback on the page
        return f"The gallery could not be indexed ({type(e).__name__}: {e})."
    finally:
        if bar is not None:
            bar.empty()
    if gallery.skipped:
        st.warning(gallery.skipped_summary())
    return None


def ranked(backend_name: str, gallery: Gallery, threshold: float | None = None) -> SearchOutcome:
    """The current sketch against the whole gallery (or every photo above `threshold`), remembered per
    sketch, backend and gallery: the reading needs every class's best photo, the grid only the top."""
    sketch = current_sketch()
    if sketch is None:
        return SearchOutcome(backend_name, error="Draw something, upload a sketch, or click an example.", blank=True)
    backend, err = backend_or_message(backend_name)
    if backend is None:
        return SearchOutcome(backend_name, error=err)
    err = ensure_indexed(backend, gallery)
    if err:
        return SearchOutcome(backend_name, error=err)
    memo = st.session_state.setdefault("results", {})
    key = (sketch["hash"], backend_name, teach.teach_version(), gallery.content_key, threshold)   # the photos, not their count
    if key not in memo:
        if len(memo) > 32:
            memo.clear()
        memo[key] = safe_search(backend, sketch["png"], gallery, max(len(gallery), 1), threshold)
    return memo[key]


def search(backend_name: str, gallery: Gallery, k: int, threshold: float | None = None) -> SearchOutcome:
    """The top k of `ranked` (every photo above `threshold`, at most k shown)."""
    full = ranked(backend_name, gallery, threshold)
    if full.result is None:
        return full
    return SearchOutcome(full.backend, first_k(full.result, k), full.error, full.blank)


def reading(backend_name: str, gallery: Gallery, threshold: float | None = None) -> Reading | None:
    """What the backend makes of the current sketch (see `ui.reading.read_sketch`)."""
    full = ranked(backend_name, gallery, threshold)
    if full.result is None:
        return None
    backend, _ = backend_or_message(backend_name)
    return read_sketch(full.result, classes_in_gallery(gallery, backend), score_kind(backend))


def gallery_title(key: str | None = None) -> str:
    """The gallery's name for people ("Bundled demo gallery"), never its key."""
    key = key if key is not None else st.session_state.get("gallery_key")
    if key == USER_GALLERY:
        return "My photos"
    for src in gallery_sources():
        if src.key == key:
            return src.title
    return str(key or "gallery")


def set_sketch(png: bytes | Image.Image, source: str, label: str | None = None) -> None:
    """The current query. `png` is the file's bytes, or for a drawing the rendered grey image itself
    (searched as it is: no PNG encoding and decoding between the canvas and the model)."""
    data = png.tobytes() + repr(png.size).encode() if isinstance(png, Image.Image) else png
    st.session_state["sketch"] = {"png": png, "source": source, "label": label,
                                  "hash": hashlib.sha1(data).hexdigest()[:16]}


def current_sketch() -> dict[str, Any] | None:
    return st.session_state.get("sketch")


def current_drawing() -> dict[str, Any] | None:
    """The current sketch when it is the canvas's drawing (not an upload or an example)."""
    s = current_sketch()
    return s if s is not None and s["source"] == "drawing" else None


def backend_label(name: str) -> str:
    """A backend's title: as the last full run listed them (app.settings), else from the model files."""
    title = (st.session_state.get("backend_titles") or {}).get(name)
    if title:
        return title
    for info in backend_infos():
        if info.name == name:
            return info.title
    return name
