"""Search: draw (or upload, or pick an example); next to the canvas, what the backend sees; below it, the photos."""
import streamlit as st

from ui import canvas, results, session, shell, teach

shell.inside_app()

MAX_WITHIN = 48          # photos shown for a similarity threshold

if not session.presenter():
    st.title("🔎 Sketch search")
    st.container(key="subtitle").caption("Draw an object: the photos update after every stroke. No drawing skills needed.")


@st.fragment
def live_search() -> None:
    """The sidebar's backend picker, input mode, tools, and the two columns; a backend switch, a tool, Undo or
    Clear reruns this (and `live_results` in it), not the rest of the sidebar and the page around it."""
    if st.session_state.get("backend_slot") is not None and not session.presenter():
        session.backend_picker(st.session_state["backend_slot"])   # in the sidebar: a switch reruns this, not the app
    presenter = session.presenter()
    narrow = (canvas.window_width() or 1440) < 1100           # a tablet: the canvas and its tools get half the width
    left, right = st.columns([5, 7] if not (presenter or narrow) else [1, 1], gap="large")
    with left:
        canvas_slot = canvas.sketch_input(defer_canvas=True)
        teach_slot = st.container()
    live_results(canvas_slot, right, narrow)
    if st.session_state.get("backend"):
        with teach_slot:
            shared, _ = session.backend_or_message(st.session_state["backend"])
            teach.panel(shared, session.current_drawing, canvas.clear_canvas, presenter)


@st.fragment
def live_results(canvas_slot, right, narrow: bool) -> None:
    """The canvas, the reading and the results: a stroke reruns only this, not the input mode, the tools row
    and the columns around it (fewer elements for the server to send and the browser to redraw)."""
    if canvas_slot is not None:
        with canvas_slot:
            canvas.draw_canvas()
    if narrow != ((canvas.window_width() or 1440) < 1100):    # the window was resized across the tablet width
        st.rerun()
    presenter = session.presenter()
    backend = st.session_state.get("backend")
    gallery, thumbs, problem = session.active_gallery()
    with right:
        if problem:
            st.warning(problem)
        elif not backend:
            st.error("No backend is available: the models/ folder has no model metadata.")
        else:
            model, _ = session.backend_or_message(backend)
            k = 8 if presenter else int(st.session_state.get("k", 12))
            reading_slot = st.container()                     # the reading comes first; the threshold under it
            with st.container(key="threshold_row"):           # on a phone it moves below the results (page_style)
                threshold = session.threshold_control(backend) if not presenter else None
            outcome = session.search(backend, gallery, k if threshold is None else MAX_WITHIN, threshold)
            with reading_slot:
                results.reading_panel(outcome, gallery, model, session.reading(backend, gallery, threshold))
            if outcome.result is None:
                if outcome.blank:
                    st.caption(f"{len(gallery)} photos in “{session.gallery_title()}”, searched with {session.backend_label(backend)}.")
            else:
                r = outcome.result
                head, stat = st.container(key="resultshead").columns([5, 2], vertical_alignment="bottom")
                head.subheader(f"Top {len(r.ids)} in “{session.gallery_title()}”" if threshold is None else
                               f"{r.extras['within']} photo{'' if r.extras['within'] == 1 else 's'} with similarity ≥ {threshold:.2f}"
                               + (f" (the first {len(r.ids)} shown)" if r.extras["within"] > len(r.ids) else ""))
                stat.metric("Query latency", f"{outcome.latency_ms:.0f} ms", help=results.latency_text(r))
                if not r.ids:
                    st.info("No photo is that similar to the sketch: lower the threshold.")
                s = session.current_sketch() or {}
                columns = canvas.result_columns(share=1.0 if (presenter or narrow) else 7 / 5)
                results.result_grid(r, thumbs, columns=columns, label=s.get("label"), gallery=gallery, backend=model)
                st.caption(f"{session.backend_label(backend)} · {len(gallery)} photos")


live_search()
