"""Streamlit building blocks shared by the pages: cached resources, the sketch input (canvas,
upload, examples), result cards. UI only; the logic lives in `sbir_core.app_support`.

`streamlit_drawable_canvas` is imported lazily inside `drawing_canvas`, because importing it
outside a running app fails (it registers a component with the runtime at import time).
"""
from __future__ import annotations

import hashlib
import html
from pathlib import Path
from typing import Any

import streamlit as st
from PIL import Image

import app_teach

from sbir_core import Gallery, SearchResult
from sbir_core.app_support import (CANVAS_ASPECT, ERASER_FACTOR, PEN_SIZES, SKETCH_WIDTH, UNLIKELY_KIND, CardScores,
                                   Example, Reading, SearchOutcome, Thumbnails, backend_infos, canvas_size, card_label,
                                   card_scores, classes_in_gallery, drawing_without_last_stroke, example_sketches,
                                   first_k, gallery_sources, grid_columns, hits, kind_probabilities,
                                   photo_class_confidence, png_bytes, read_sketch, safe_search, scale_drawing,
                                   score_kind, sketch_from_drawing, supports_threshold, try_classes, unlikely_from)
from sbir_core.backends import Backend, ModelFileError, load_backend
from sbir_core.data.classes import display
from sbir_core.data.preprocess import ImageInputError, load_image
from sbir_core.store import store_uri

USER_GALLERY = "user"
THUMBS_DIR = Path(__file__).resolve().parent / "static"   # Streamlit serves it at app/static/ (static serving on);
                                                          # shared galleries' thumbnails are written to thumbs/ in it
CANVAS_TEST_KEY = "canvas_inject"     # tests put a Fabric.js drawing here (the component does not render in AppTest)


# -- cached resources (shared by every browser session) ----------------------------------------
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


# -- settings --------------------------------------------------------------------------------
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
        from sbir_core.app_support import missing_gallery_message
        return None, None, missing_gallery_message()
    try:
        g, thumbs = get_shared_gallery(key, store_uri() if key == "store" else "")
    except (ImageInputError, OSError, KeyError, ValueError) as e:
        return None, None, f"The gallery could not be opened ({e})."
    return _with_taught_photos(g, thumbs)


def _with_taught_photos(g: Gallery, thumbs: Thumbnails) -> tuple[Gallery, Thumbnails, None]:
    """The gallery with this session's photos of taught kinds; a line for each that could not be read."""
    g, thumbs, problems = app_teach.session_gallery(g, thumbs)
    for p in problems:
        st.warning(p)
    return g, thumbs, None


_LOADED: dict[str, Backend] = {}      # the backends get_backend has loaded: a dict lookup per call, not
                                      # st.cache_resource's argument hashing (~5 calls per rerun)


def backend_or_message(name: str) -> tuple[Backend | None, str | None]:
    """The backend as this session sees it (with the kinds taught here), or why it cannot be loaded
    (a message for the page, never a traceback)."""
    if name in _LOADED:
        return app_teach.session_backend(name, _LOADED[name]), None
    try:
        _LOADED[name] = get_backend(name)
        return app_teach.session_backend(name, _LOADED[name]), None
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
    key = (sketch["hash"], backend_name, app_teach.teach_version(), gallery.content_key, threshold)   # the photos, not their count
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
    """What the backend makes of the current sketch (see `sbir_core.app_support.read_sketch`)."""
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


# -- the current sketch ----------------------------------------------------------------------
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


# The canvas's helper: a tiny inline component (no iframe) that (1) hides the drawable canvas's own
# floating toolbar, which lay over the app's tools and duplicated undo/clear, (2) tells Python how
# wide the canvas's column is and how tall the window is, so the canvas always fits (laptop to phone),
# and (3) sends a stroke the moment the pen lifts.
_ROOM_JS = r"""
export default function(component) {
  const { parentElement, setStateValue } = component;
  const w = window;
  if (!w.__sketchsearchHideToolbar) {
    const hide = () => {
      for (const host of document.querySelectorAll('[data-testid="stBidiComponentIsolated"]')) {
        const root = host.shadowRoot;
        if (root && !root.querySelector('style[data-sketchsearch]')) {   // before the canvas renders in it, too
          const css = document.createElement('style');
          css.setAttribute('data-sketchsearch', '');
          css.textContent = '.dc-toolbar{display:none !important}.dc-scroll{overflow:hidden !important}';
          root.appendChild(css);
        }
      }
    };
    let queued = false;
    new MutationObserver(() => {
      if (!queued) { queued = true; requestAnimationFrame(() => { queued = false; hide(); }); }
    }).observe(document.body, {childList: true, subtree: true});
    setInterval(hide, 300);            // a shadow root attached after its host was inserted: no mutation to see
    w.__sketchsearchHideToolbar = hide;
    // (3) The canvas sends a finished stroke only after a 200 ms debounce. On the pen lift, press its own
    // (hidden) "send" button instead: the stroke leaves at once (the pending debounced send is cancelled).
    let penRoot = null;
    document.addEventListener('pointerdown', (e) => {
      const c = (e.composedPath ? e.composedPath() : []).find(n => n.classList && n.classList.contains('upper-canvas'));
      penRoot = c ? c.getRootNode() : null;
    }, true);
    const lift = () => {
      const root = penRoot;
      penRoot = null;
      if (!root || !root.querySelector) return;
      setTimeout(() => {               // after the canvas has recorded the stroke (a microtask of its pointerup)
        const send = root.querySelector('button[aria-label="Update the app with this drawing"]');
        if (send) send.click();
      }, 0);
    };
    document.addEventListener('pointerup', lift, true);
    document.addEventListener('pointercancel', lift, true);
  }
  w.__sketchsearchHideToolbar();
  const el = parentElement.host || parentElement;
  if (el.__sketchsearchRoom) return;
  let last = null;
  const report = () => {
    const width = Math.floor(el.getBoundingClientRect().width);
    const main = document.querySelector('[data-testid="stMain"]');
    const top = Math.round(el.getBoundingClientRect().top + (main ? main.scrollTop : 0) + w.scrollY);
    const room = {w: width, vw: w.innerWidth, vh: w.innerHeight, top: top};
    if (width <= 0) return;
    if (last && Math.abs(last.w - room.w) < 6 && Math.abs(last.vh - room.vh) < 40) return;
    last = room;
    setStateValue('room', room);
  };
  el.__sketchsearchRoom = new ResizeObserver(() => requestAnimationFrame(report));
  el.__sketchsearchRoom.observe(el);
  w.addEventListener('resize', () => requestAnimationFrame(report));
  report();
}
"""
_room_component = None


def canvas_room() -> dict[str, float] | None:
    """The canvas column's width (and the window's size) on this page, as the browser reported it;
    None until it has. One probe per page: columns differ between pages."""
    global _room_component
    if _room_component is None:
        _room_component = st.components.v2.component("sketchsearch.canvas_room", js=_ROOM_JS, isolate_styles=False)
    page = st.session_state.get("last_page") or "search"
    res = _room_component(key=_probe_key(), default={"room": None}, on_room_change=lambda: None)
    room = res.get("room") if hasattr(res, "get") else getattr(res, "room", None)
    rooms = st.session_state.setdefault("canvas_rooms", {})
    if room:
        rooms[page] = room
        st.session_state["canvas_room"] = room          # the latest: the window's width for result grids
    return rooms.get(page)


def _probe_key() -> str:
    return f"canvas_room_probe-{st.session_state.get('last_page') or 'search'}"


def window_width() -> float | None:
    """The browser window's width as last reported by the canvas helper (None before it has). Reads
    the probe's state directly, so a page can size its columns before the probe is drawn."""
    fresh = (st.session_state.get(_probe_key()) or {}).get("room") if _probe_key() in st.session_state else None
    return (fresh or st.session_state.get("canvas_room") or {}).get("vw")


def result_columns(wide: int = 4, share: float | None = None) -> int:
    """Result cards per row. With `share` (the results column's width over the canvas column's), from
    the reported canvas column width: a card needs about 115 px. Else from the window: 2 on a phone,
    3 on a large phone, 4 on a tablet, `wide` on a laptop. The page's CSS keeps phone rows side by side."""
    vw = window_width()
    if not vw:
        return wide
    if vw < 480:
        return 2
    room = (st.session_state.get("canvas_rooms") or {}).get(st.session_state.get("last_page") or "search")
    if share is not None and room and room.get("w"):
        return grid_columns(room["w"] * (1.0 if vw < 640 else share), wide)
    return 3 if vw < 640 else 4 if vw < 1100 else wide


def current_canvas_size(room: dict[str, float] | None = None) -> tuple[int, int]:
    room = room or {}
    return canvas_size(room.get("w"), room.get("vh"), presenter(), room.get("top"))


def drawing_canvas(stroke_width: float, eraser: bool) -> dict[str, Any] | None:
    """The canvas, sized to its column; returns the drawing in sketch pixels (None until something is
    drawn). Strokes and pen widths scale by one factor between the canvas and the sketch image."""
    if CANVAS_TEST_KEY in st.session_state:
        return st.session_state[CANVAS_TEST_KEY]         # tests inject drawings in sketch pixels
    try:
        from streamlit_drawable_canvas import st_canvas
    except Exception as e:  # the component is optional: uploads and examples still work
        st.info(f"The drawing canvas is not available ({type(e).__name__}); upload a sketch or pick an example.")
        return None
    room = canvas_room()
    state = st.session_state
    if room is None:      # mount the canvas only once its size is known: a stroke on a canvas about to be
        st.markdown("<div style='height: 280px'></div>", unsafe_allow_html=True)    # replaced would be lost
        return state.get("drawing")
    w, h = current_canvas_size(room)
    if state.get("canvas_dims") != (w, h):               # the room changed: remount at the new size, same drawing
        if state.get("canvas_dims") is not None:
            state["canvas_initial"] = state.get("drawing")
            state["canvas_nonce"] = state.get("canvas_nonce", 0) + 1
        state["canvas_dims"] = (w, h)
    f = w / SKETCH_WIDTH
    result = st_canvas(stroke_width=round(stroke_width * f, 2), stroke_color="#ffffff" if eraser else "#000000",
                       background_color="#ffffff", height=h, width=w, drawing_mode="freedraw",
                       initial_drawing=scale_drawing(state.get("canvas_initial"), f), update_streamlit=True,
                       key=_canvas_key(w, h))
    raw = result.json_data
    if raw is None or raw == state.get("canvas_raw"):
        return state.get("drawing") if raw is not None else None
    state["canvas_raw"] = raw
    return scale_drawing(raw, 1 / f)


def _aspect() -> float:
    w, h = st.session_state.get("canvas_dims") or (SKETCH_WIDTH, SKETCH_WIDTH * CANVAS_ASPECT)
    return h / w


def _remount_canvas(initial: dict[str, Any] | None, edit: bool = True) -> None:
    st.session_state["canvas_initial"] = initial
    st.session_state["canvas_nonce"] = st.session_state.get("canvas_nonce", 0) + 1
    if edit and CANVAS_TEST_KEY in st.session_state:                # tests: the injected canvas follows undo/clear too
        st.session_state[CANVAS_TEST_KEY] = initial


def _canvas_key(w: int, h: int) -> str:
    key = f"canvas-{st.session_state.get('canvas_nonce', 0)}-{w}x{h}"
    st.session_state["canvas_key"] = key
    return key


def _latest_drawing() -> dict[str, Any] | None:
    """The drawing as the canvas last sent it (sketch pixels). Undo and clear read it, not the drawing
    of the last finished run: a stroke sent together with the click has not been through a run yet."""
    state = st.session_state
    key, dims = state.get("canvas_key"), state.get("canvas_dims")
    try:
        raw = ((state[key] if key in state else {}).get("drawing") or {}).get("raw")
    except (AttributeError, KeyError, TypeError):
        raw = None
    if raw is None or not dims or raw == state.get("canvas_raw"):
        return state.get("drawing")
    return scale_drawing(raw, SKETCH_WIDTH / dims[0])


def _undo() -> None:
    drawing = drawing_without_last_stroke(_latest_drawing())
    st.session_state["drawing"] = drawing
    _remount_canvas(drawing)
    _sketch_from_drawing(drawing)


def clear_canvas() -> None:
    """Empty the canvas (and the sketch, when it was the drawing)."""
    st.session_state["drawing"] = None
    _remount_canvas(None)
    if (current_sketch() or {}).get("source") == "drawing":
        st.session_state["sketch"] = None


def _sketch_from_drawing(drawing: dict[str, Any] | None) -> None:
    im = sketch_from_drawing(drawing, _aspect())
    if im is None:
        if (current_sketch() or {}).get("source") == "drawing":
            st.session_state["sketch"] = None
    else:
        set_sketch(im, "drawing", st.session_state.get("target"))


def remount_canvas_with_current_drawing() -> None:
    """Called when the page changes: the new page's canvas starts from the drawing so far."""
    _remount_canvas(st.session_state.get("drawing"), edit=False)


TOOLS = ["✏️ Pen", "🧽 Eraser"]
PEN_DOTS = {"Thin": "•", "Medium": "●", "Thick": "⬤"}     # pen widths as dots of growing size


def draw_panel() -> None:
    """One row of tools (pen/eraser, pen width, undo, clear), then the canvas. A changed drawing
    becomes the sketch."""
    tools_row()
    draw_canvas()


def tools_row() -> None:
    """Pen or eraser, pen width, Undo and Clear, in one row above the canvas."""
    with st.container(horizontal=True, key="tools", gap="small", vertical_alignment="center"):
        st.segmented_control("Tool", TOOLS, default=TOOLS[0], required=True, key="pen_tool",
                             label_visibility="collapsed")
        st.segmented_control("Pen width", list(PEN_SIZES), default="Medium", required=True, key="pen_size",
                             format_func=PEN_DOTS.get, label_visibility="collapsed")
        st.button(":material/undo:", on_click=_undo, key="undo", help="Undo the last stroke")
        st.button(":material/delete:", on_click=clear_canvas, key="clear", help="Clear the canvas")


def draw_canvas() -> None:
    """The canvas with the pen the tools row set (read from the session, so this can rerun on its own,
    e.g. in a fragment of its own under the tools row). A changed drawing becomes the sketch."""
    state = st.session_state
    eraser = state.get("pen_tool") == TOOLS[1]
    width = PEN_SIZES.get(state.get("pen_size") or "Medium", 7.0) * (ERASER_FACTOR if eraser else 1.0)
    drawing = drawing_canvas(width, eraser)
    if drawing is not None and drawing != state.get("drawing"):
        state["drawing"] = drawing
        _sketch_from_drawing(drawing)
    s = current_sketch()
    if s is not None and s["source"] != "drawing":
        st.caption(f"Searching {query_name(s)}; draw to search your drawing instead.")


def query_name(s: dict[str, Any]) -> str:
    """The current query in words: 'your drawing', 'the example “apple”', 'your upload'."""
    if s["source"] == "example":
        return f"the example “{display(s['label'])}”" if s.get("label") else "an example"
    if s["source"] == "upload":
        return "your upload"
    return "your drawing"


def upload_panel() -> None:
    f = st.file_uploader("Upload a sketch: a drawing, or a phone photo of one on paper (PNG or JPEG)",
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
        set_sketch(png_bytes(im.convert("RGBA") if im.mode in ("RGBA", "LA", "P") else
                             im if im.mode == "L" else im.convert("RGB")), "upload")   # colour kept: coloured ink
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


def sketch_input(defer_canvas: bool = False) -> Any:
    """Draw, upload or pick an example; whichever changed last is the current sketch. With
    `defer_canvas`, drawing mode draws only the tools row and returns an empty container under it, where
    the caller draws the canvas with `draw_canvas` (the Search page: from a fragment that reruns alone on
    a stroke); otherwise None."""
    mode = st.segmented_control("Sketch", ["✏️ Draw", "📁 Upload", "🖼️ Examples"], default="✏️ Draw",
                                key="input_mode", label_visibility="collapsed", required=True)
    if mode == "📁 Upload":            # the query's thumbnail is in the reading, next to this panel
        upload_panel()
    elif mode == "🖼️ Examples":
        examples_panel()
    elif defer_canvas:
        tools_row()
        return st.container()
    else:
        draw_panel()
    return None


# -- what the backend sees -------------------------------------------------------------------
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
            c2.page_link("app_pages/galleries.py", label="Galleries", icon="🖼️")


# -- results ---------------------------------------------------------------------------------
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


def backend_label(name: str) -> str:
    """A backend's title: as the last full run listed them (app.settings), else from the model files."""
    title = (st.session_state.get("backend_titles") or {}).get(name)
    if title:
        return title
    for info in backend_infos():
        if info.name == name:
            return info.title
    return name


def page_style() -> None:
    """A little CSS: tighter cards, the reading in large type, a 2-3 column result grid on phones
    (Streamlit stacks columns one per row below 640 px), bigger text and no sidebar in presenter mode."""
    css = """
    div[data-testid="stVerticalBlockBorderWrapper"] img { border-radius: 6px; }
    .block-container { padding-top: 2.2rem; }
    @media (min-width: 641px) { .block-container { padding-left: 2.5rem; padding-right: 2.5rem; } }
    .sketch-reading { font-size: 1.2rem; font-weight: 600; line-height: 1.4; }
    .card-name, .card-score { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
    .card-name { font-weight: 600; font-size: 0.95rem; line-height: 1.3; }
    .card-score { color: #6b7280; font-size: 0.8rem; }
    .card-name.compact { font-weight: 400; font-size: 0.78rem; color: #4b5563; }
    .result-grid { display: grid; grid-template-columns: repeat(var(--cols, 4), minmax(0, 1fr)); gap: 1rem; }
    .result-card { border: 1px solid rgba(49, 51, 63, 0.2); border-radius: 0.5rem; padding: calc(1rem - 1px);
                   padding-bottom: 0.3rem; min-width: 0; }
    .result-card.compact { border: none; padding: 0; }
    .result-card.unlikely { opacity: 0.6; }
    .grid-divider { grid-column: 1 / -1; color: #6b7280; font-size: 0.85rem; border-top: 1px dashed #d1d5db;
                    padding-top: 0.5rem; margin-top: 0.25rem; }
    .result-card img { width: 100%; height: auto; aspect-ratio: 1; display: block; border-radius: 6px;
                       margin-bottom: 1rem; }
    .result-card.compact img { margin-bottom: 0.9rem; }
    .st-key-resultshead h3 { font-size: 1.3rem; padding: 0.2rem 0; }
    .st-key-resultshead [data-testid="stMetricValue"] { font-size: 1.5rem; }
    .st-key-tools button p { white-space: nowrap; }
    .st-key-tools button { padding-left: 0.6rem !important; padding-right: 0.6rem !important; min-height: 2.4rem; }
    .st-key-tools { column-gap: 0.4rem !important; }
    @media (max-width: 640px) {
      .block-container { padding: 3.2rem 0.75rem 2rem 0.75rem; }
      h1 { font-size: 1.6rem !important; padding-top: 0 !important; }
      div[data-testid="stHorizontalBlock"] { row-gap: 0.75rem !important; }
      h3 { font-size: 1.1rem !important; }
      .st-key-subtitle { display: none; }
      div:has(> .st-key-threshold_row) { order: 99; }
      .st-key-resultshead div[data-testid="stHorizontalBlock"] { flex-wrap: nowrap !important; }
      .st-key-resultshead div[data-testid="stColumn"] { min-width: 0 !important; }
      .st-key-resultshead [data-testid="stMetricLabel"] { display: none; }
      [data-testid="stMetricValue"] { font-size: 1.25rem !important; }
      [class*="st-key-results"] div[data-testid="stHorizontalBlock"] { flex-wrap: nowrap !important; gap: 0.5rem !important; }
      [class*="st-key-results"] div[data-testid="stColumn"] { flex: 1 1 0 !important; min-width: 0 !important; width: auto !important; }
      [class*="st-key-results"] .stMarkdown p { font-size: 0.85rem; }
      .result-grid { gap: 0.5rem; }
      .result-card .card-name { font-size: 0.85rem; }
    }
    """
    if presenter():
        css += """
        section[data-testid="stSidebar"], div[data-testid="stSidebarCollapsedControl"] { display: none !important; }
        html, body, .stMarkdown p { font-size: 1.15rem; }
        .card-name { font-size: 0.95rem; } .card-score { font-size: 0.85rem; }
        .sketch-reading { font-size: 1.5rem; }
        .block-container { max-width: 100% !important; padding: 3.5rem 2rem 1rem 2rem; }
        """
    st.markdown(f"<style>{css}</style>", unsafe_allow_html=True)


def map_thumbnail_url(emb: Any, i: int, size: int = 72) -> str:
    """A small data-URL preview of map point i for the hover tooltip ('' when its file is not here)."""
    import base64
    import io
    source = emb.image(i)
    if source is None:
        return ""
    try:
        im = load_image(source).convert("RGB")
    except ImageInputError:
        return ""
    im.thumbnail((size, size))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=70)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
