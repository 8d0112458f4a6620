"""The sketch input: the drawable canvas sized to the screen (its helper script in canvas_room.js), the
pen and eraser, uploads and examples.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import streamlit as st

from sbir_core.data.classes import display
from sbir_core.data.preprocess import ImageInputError, load_image

from .cards import grid_columns
from .catalogue import Example
from .drawing import (
    CANVAS_ASPECT,
    ERASER_FACTOR,
    PEN_SIZES,
    SKETCH_WIDTH,
    canvas_size,
    drawing_without_last_stroke,
    png_bytes,
    scale_drawing,
    sketch_from_drawing,
)
from .session import current_sketch, get_examples, presenter, set_sketch

                                                          # shared galleries' thumbnails are written to thumbs/ in it
CANVAS_TEST_KEY = "canvas_inject"     # tests put a Fabric.js drawing here (the component does not render in AppTest)


# The canvas's helper: a tiny inline component (no iframe) that (1) hides the drawable canvas's own
# floating toolbar, which lay over the app's tools and duplicated undo/clear, (2) tells Python how
# wide the canvas's column is and how tall the window is, so the canvas always fits (laptop to phone),
# and (3) sends a stroke the moment the pen lifts.
_ROOM_JS = (Path(__file__).parent / "canvas_room.js").read_text()


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
