"""SketchSearch: draw something, find the photos. Streamlit entry point: navigation + shared settings.

    streamlit run app.py            # or scripts/demo.sh;  ?presenter=1 starts in presenter mode
"""
from __future__ import annotations

import streamlit as st

from ui import canvas, session, shell, style
from ui.catalogue import backend_infos, gallery_sources
from ui.reports import first_row_hits, load_report

st.set_page_config(page_title="SketchSearch", page_icon="✏️", layout="wide")

state = st.session_state
if "presenter" not in state:
    state["presenter"] = st.query_params.get("presenter", "0") in ("1", "true", "yes")
for key in ("gallery_key", "backend"):                 # pages ask for a switch by setting *_next
    if f"{key}_next" in state:
        state[key] = state.pop(f"{key}_next")


def default_backend(names: list[str]) -> str:
    """The backend that serves a visitor's first drawings best, among those that load: the best
    doodles -> bundled gallery hit@4 in the benchmark (bench.json); without it, the best mAP@all of
    the shipped evaluation; without either, the first of PREFERRED. Never an error on the first page."""
    report = load_report() or {"backends": {}}
    hits = first_row_hits()
    mean_ap = {n: m.get("mAP@all") for n, m in report["backends"].items() if isinstance(m, dict)}
    order = []
    for score in (hits, mean_ap):
        order += sorted((n for n in names if isinstance(score.get(n), (int, float))), key=lambda n: -score[n])
    order += [n for n in PREFERRED if n in names] + list(names)
    return next((n for n in dict.fromkeys(order) if session.backend_or_message(n)[0] is not None), names[0])


PREFERRED = ("triplet", "classifier", "cgan", "classifier_small", "pretrained", "random")


def publish(names: list[str], options: list[str]) -> None:
    """What the pages read: the picked backend and gallery (a picker left empty falls back to the first)."""
    state["backend"] = state.get("backend_picker") or (names[0] if names else None)
    state["gallery_key"] = state.get("gallery_key_picker") or (options[0] if options else None)


def settings(where, backend_in_page: bool = False) -> None:
    """Backend and gallery pickers, result count and presenter mode (sidebar, or the top in presenter mode).
    With `backend_in_page`, the backend picker's place in the sidebar is left as an empty container that
    the page's fragment fills (`session.backend_picker`): a switch then reruns that fragment, not the app."""
    infos = [i for i in backend_infos() if i.error is None]
    names = [i.name for i in infos]
    titles = {i.name: i.title for i in infos}
    state["backend_titles"] = titles                   # session.backend_label: no metadata files read per stroke
    if names and state.get("backend") not in names:    # first run: a picker value set before it (tests), else the default
        picked = state.get("backend_picker")
        state["backend"] = picked if picked in names else default_backend(names)
    sources = gallery_sources()
    options = [s.key for s in sources] + ([session.USER_GALLERY] if state.get("user_gallery") is not None else [])
    gtitles = {s.key: s.title for s in sources} | {session.USER_GALLERY: "My photos"}
    if options and state.get("gallery_key") not in options:
        state["gallery_key"] = state["gallery_key_picker"] if state.get("gallery_key_picker") in options else options[0]
    # The choices live in plain keys: Streamlit drops a widget's state on a page where it is drawn
    # elsewhere (the backend picker sits in the Search page's fragment), so each full run seeds the
    # pickers from them, and a pick is written back at once (`session.keep`).
    for key, allowed in (("backend", names), ("gallery_key", options)):
        if state.get(key) in allowed:
            state[f"{key}_picker"] = state[key]
    if session.presenter():
        state.pop("backend_slot", None)
        c1, c2, c3 = where.columns([3, 3, 1.4])
        c1.selectbox("Backend", names, format_func=titles.get, key="backend_picker", on_change=session.keep,
                     args=("backend",))
        c2.selectbox("Gallery", options, format_func=gtitles.get, key="gallery_key_picker", on_change=session.keep,
                     args=("gallery_key",))
        c3.toggle("Presenter mode", key="presenter")
        publish(names, options)
        return
    with where:
        st.markdown("### ✏️ SketchSearch")
        if backend_in_page:
            state["backend_slot"] = st.container()
        else:
            state.pop("backend_slot", None)
            session.backend_picker()
        if not names:
            st.error("No backend is available: the models/ folder is empty.")
        st.selectbox("Gallery", options, format_func=gtitles.get, key="gallery_key_picker", on_change=session.keep,
                     args=("gallery_key",), help="Which photos to search; browse or add your own on the Galleries page.")
        st.slider("Results", 4, 40, 12, step=4, key="k")
        st.toggle("Presenter mode", key="presenter", help="Large canvas and results, no sidebar.")
        publish(names, options)
        broken = [i for i in backend_infos() if i.error]
        for i in broken:
            st.warning(i.error)


pages = [
    st.Page("pages/search.py", title="Search", icon="🔎", default=True),
    st.Page("pages/compare.py", title="Compare", icon="⚖️"),
    st.Page("pages/embedding_map.py", title="Embedding map", icon="🗺️"),
    st.Page("pages/evaluation.py", title="Evaluation", icon="📊"),
    st.Page("pages/galleries.py", title="Galleries", icon="🖼️"),
]
page = st.navigation(pages, position="top" if session.presenter() else "sidebar")
style.page_style()
settings(st.container() if session.presenter() else st.sidebar, backend_in_page=page.url_path == pages[0].url_path)
if state.get("last_page") != page.url_path:             # a new page's canvas starts from the drawing so far
    state["last_page"] = page.url_path
    canvas.remount_canvas_with_current_drawing()
with shell.app_running():
    page.run()
