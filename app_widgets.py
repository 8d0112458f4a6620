"""Streamlit building blocks shared by the pages: cached resources, the sketch input (canvas,
upload, examples), result cards. UI only; the logic lives in `sbir_core.app_support`.

`streamlit_drawable_canvas` is imported lazily inside `drawing_canvas`, because importing it
outside a running app fails (it registers a component with the runtime at import time).
"""
from __future__ import annotations

import hashlib
from typing import Any

import streamlit as st

from sbir_core import Gallery, SearchResult
from sbir_core.app_support import (Example, SearchOutcome, Thumbnails, backend_infos, drawing_without_last_stroke,
                                   example_sketches, gallery_sources, hits, png_bytes, pretty_label,
                                   render_drawing, safe_search, supports_threshold)
from sbir_core.backends import Backend, ModelFileError, load_backend
from sbir_core.data.classes import display
from sbir_core.data.preprocess import ImageInputError, load_image

USER_GALLERY = "user"
CANVAS_TEST_KEY = "canvas_inject"     # tests put a Fabric.js drawing here (the component does not render in AppTest)


# -- cached resources (shared by every browser session) ----------------------------------------
@st.cache_resource(show_spinner=False)
def get_backend(name: str) -> Backend:
    """One ONNX Runtime session set per backend for the whole server."""
    return load_backend(name)


@st.cache_resource(show_spinner="Opening the gallery…")
def get_shared_gallery(key: str) -> tuple[Gallery, Thumbnails]:
    for src in gallery_sources():
        if src.key == key:
            g = src.load()
            return g, Thumbnails(g)
    raise KeyError(key)


@st.cache_resource(show_spinner=False)
def get_examples() -> list[Example]:
    return example_sketches()


# -- settings --------------------------------------------------------------------------------
def presenter() -> bool:
    return bool(st.session_state.get("presenter", False))


def active_gallery() -> tuple[Gallery | None, Thumbnails | None, str | None]:
    """The gallery picked in the settings, its thumbnails, or a message saying why there is none."""
    key = st.session_state.get("gallery_key")
    if key == USER_GALLERY:
        g = st.session_state.get("user_gallery")
        if g is not None:
            return g, st.session_state["user_thumbs"], None
        return None, None, "Your photos are gone (the session restarted): upload them again on the Galleries page."
    if not key:
        from sbir_core.app_support import missing_gallery_message
        return None, None, missing_gallery_message()
    try:
        g, thumbs = get_shared_gallery(key)
        return g, thumbs, None
    except (ImageInputError, OSError, KeyError, ValueError) as e:
        return None, None, f"The gallery could not be opened ({e})."


def backend_or_message(name: str) -> tuple[Backend | None, str | None]:
    try:
        return get_backend(name), None
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
    return float(value.slider("Similarity at least", 0.0, 1.0, 0.5, 0.05, key="threshold",
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


def search(backend_name: str, gallery: Gallery, k: int, threshold: float | None = None) -> SearchOutcome:
    """Search the current sketch (top k, or every photo above `threshold`), remembering the outcome."""
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
    key = (sketch["hash"], backend_name, gallery.content_key, k, threshold)     # the photos themselves, not their count
    if key not in memo:
        if len(memo) > 32:
            memo.clear()
        memo[key] = safe_search(backend, sketch["png"], gallery, k, threshold)
    return memo[key]


# -- the current sketch ----------------------------------------------------------------------
def set_sketch(png: bytes, source: str, label: str | None = None) -> None:
    st.session_state["sketch"] = {"png": png, "source": source, "label": label,
                                  "hash": hashlib.sha1(png).hexdigest()[:16]}


def current_sketch() -> dict[str, Any] | None:
    return st.session_state.get("sketch")


def canvas_size() -> tuple[int, int]:
    return (720, 560) if presenter() else (420, 380)


def drawing_canvas(stroke_width: int, eraser: bool) -> dict[str, Any] | None:
    """The canvas; returns its drawing as Fabric.js JSON (None until something is drawn)."""
    if CANVAS_TEST_KEY in st.session_state:
        return st.session_state[CANVAS_TEST_KEY]
    try:
        from streamlit_drawable_canvas import st_canvas
    except Exception as e:  # the component is optional: uploads and examples still work
        st.info(f"The drawing canvas is not available ({type(e).__name__}); upload a sketch or pick an example.")
        return None
    w, h = canvas_size()
    result = st_canvas(stroke_width=stroke_width, stroke_color="#ffffff" if eraser else "#000000",
                       background_color="#ffffff", height=h, width=w, drawing_mode="freedraw",
                       initial_drawing=st.session_state.get("canvas_initial"), update_streamlit=True,
                       key=f"canvas-{st.session_state.get('canvas_nonce', 0)}")
    return result.json_data


def _remount_canvas(initial: dict[str, Any] | None, edit: bool = True) -> None:
    st.session_state["canvas_initial"] = initial
    st.session_state["canvas_nonce"] = st.session_state.get("canvas_nonce", 0) + 1
    if edit and CANVAS_TEST_KEY in st.session_state:                # tests: the injected canvas follows undo/clear too
        st.session_state[CANVAS_TEST_KEY] = initial


def _undo() -> None:
    drawing = drawing_without_last_stroke(st.session_state.get("drawing"))
    st.session_state["drawing"] = drawing
    _remount_canvas(drawing)
    _sketch_from_drawing(drawing)


def _clear() -> None:
    st.session_state["drawing"] = None
    _remount_canvas(None)
    if (current_sketch() or {}).get("source") == "drawing":
        st.session_state["sketch"] = None


def _sketch_from_drawing(drawing: dict[str, Any] | None) -> None:
    w, h = canvas_size()
    im = render_drawing(drawing, w, h)
    if im is None:
        if (current_sketch() or {}).get("source") == "drawing":
            st.session_state["sketch"] = None
    else:
        set_sketch(png_bytes(im), "drawing")


def remount_canvas_with_current_drawing() -> None:
    """Called when the page changes: the new page's canvas starts from the drawing so far."""
    _remount_canvas(st.session_state.get("drawing"), edit=False)


def draw_panel() -> None:
    """Pen width, pen/eraser, the canvas, undo and clear. A changed drawing becomes the sketch."""
    c1, c2 = st.columns([3, 2])
    width = c1.slider("Pen width", 1, 30, 6 if not presenter() else 10, key="pen_width")
    tool = c2.segmented_control("Tool", ["✏️ Pen", "🧽 Eraser"], default="✏️ Pen", key="pen_tool")
    drawing = drawing_canvas(width, tool == "🧽 Eraser")
    if drawing is not None and drawing != st.session_state.get("drawing"):
        st.session_state["drawing"] = drawing
        _sketch_from_drawing(drawing)
    b1, b2, _ = st.columns([1, 1, 3])
    b1.button("↶ Undo", on_click=_undo, width="stretch", key="undo")
    b2.button("🗑 Clear", on_click=_clear, width="stretch", key="clear")


def upload_panel() -> None:
    f = st.file_uploader("Upload a sketch (PNG or JPEG, dark lines on a light background)",
                         type=["png", "jpg", "jpeg", "webp", "bmp", "gif"], key="sketch_upload")
    if f is None:
        return
    data = f.getvalue()
    digest = hashlib.sha1(data).hexdigest()[:16]
    if st.session_state.get("upload_seen") == digest:
        return
    st.session_state["upload_seen"] = digest
    try:
        im = load_image(data)
        im.thumbnail((1024, 1024))
        set_sketch(png_bytes(im.convert("RGBA") if im.mode in ("RGBA", "LA", "P") else im.convert("L")), "upload")
    except ImageInputError as e:
        st.session_state["upload_seen"] = None
        st.error(f"That file cannot be used as a sketch: {e}")


def _pick_example(ex: Example) -> None:
    set_sketch(ex.png, "example", ex.label)


def examples_panel(columns: int = 4) -> None:
    examples = get_examples()
    if not examples:
        st.info("No example sketches are available.")
        return
    cols = st.columns(columns)
    for i, ex in enumerate(examples):
        with cols[i % columns]:
            st.image(ex.png, width="stretch")
            st.button(display(ex.label), key=f"example-{i}", on_click=_pick_example, args=(ex,),
                      width="stretch", help=ex.source)
    st.caption("Examples: " + ("held-out Sketchy sketches." if "Sketchy" in examples[0].source else
               "OpenMoji black outline emoji (openmoji.org), CC BY-SA 4.0."))


def sketch_input() -> None:
    """Draw, upload or pick an example; whichever changed last is the current sketch."""
    mode = st.segmented_control("Sketch", ["✏️ Draw", "📁 Upload", "🖼️ Examples"], default="✏️ Draw",
                                key="input_mode", label_visibility="collapsed")
    if mode == "📁 Upload":
        upload_panel()
        sketch_preview()
    elif mode == "🖼️ Examples":
        sketch_preview()
        examples_panel()
    else:
        draw_panel()


def sketch_preview(width: int = 160) -> None:
    s = current_sketch()
    if s is None:
        return
    st.image(s["png"], width=width, caption=f"Query ({s['source']}" + (f": {display(s['label'])})" if s["label"] else ")"))


# -- results ---------------------------------------------------------------------------------
def result_grid(result: SearchResult, thumbs: Thumbnails, columns: int, label: str | None = None,
                max_items: int | None = None, compact: bool = False) -> None:
    """Photo cards with label and score; ✓/✗ when the sketch's class is known."""
    correct = hits(result, label)
    n = len(result.ids) if max_items is None else min(max_items, len(result.ids))
    for row in range(0, n, columns):
        cols = st.columns(columns)
        for j in range(columns):
            i = row + j
            if i >= n:
                break
            mark = "" if correct is None else ("✅ " if correct[i] else "❌ ")
            if compact:
                with cols[j]:
                    st.image(thumbs(int(result.indices[i])), width="stretch")
                    st.caption(f"{mark}**{pretty_label(result.labels[i])}** · score {float(result.scores[i]):.2f}")
                continue
            with cols[j].container(border=True):
                st.image(thumbs(int(result.indices[i])), width="stretch")
                st.markdown(f"{mark}**{pretty_label(result.labels[i])}**  \n"
                            f"<span style='color:#6b7280'>#{i + 1} · score {float(result.scores[i]):.3f}</span>",
                            unsafe_allow_html=True)


def extras_panel(result: SearchResult, compact: bool = False) -> None:
    """What a backend shows besides photos: its top classes, its imaginary photo."""
    top = result.extras.get("top_classes")
    if top:
        st.markdown("**Top classes**")
        for cls, p in list(top)[:5]:
            st.progress(min(max(float(p), 0.0), 1.0), text=f"{display(str(cls))} · {float(p):.0%}")
    imaginary = result.extras.get("imaginary")
    if imaginary is not None:
        st.image(imaginary, caption="Imaginary photo (cGAN)", width=160 if compact else 256)


def latency_text(result: SearchResult) -> str:
    t = result.extras.get("timings_ms", {})
    return (f"{t.get('total', 0):.0f} ms (preprocess {t.get('preprocess', 0):.0f}, "
            f"encode {t.get('encode', 0):.0f}, search {t.get('search', 0):.0f})")


def backend_label(name: str) -> str:
    for info in backend_infos():
        if info.name == name:
            return info.title
    return name


def page_style() -> None:
    """A little CSS: tighter cards, bigger text in presenter mode, no sidebar there."""
    css = """
    div[data-testid="stVerticalBlockBorderWrapper"] img { border-radius: 6px; }
    .block-container { padding-top: 2.2rem; }
    """
    if presenter():
        css += """
        section[data-testid="stSidebar"], div[data-testid="stSidebarCollapsedControl"] { display: none !important; }
        html, body, .stMarkdown p { font-size: 1.15rem; }
        .block-container { max-width: 100% !important; padding: 4rem 2rem 1rem 2rem; }
        """
    st.markdown(f"<style>{css}</style>", unsafe_allow_html=True)


def map_thumbnail_url(emb: Any, i: int, size: int = 72) -> str:
    """A small data-URL preview of map point i for the hover tooltip ('' when its file is not here)."""
    import base64
    import io
    path = emb.resolve(i)
    if path is None:
        return ""
    try:
        im = load_image(path).convert("RGB")
    except ImageInputError:
        return ""
    im.thumbnail((size, size))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=70)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
