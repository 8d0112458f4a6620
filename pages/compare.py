"""Compare: the same sketch through every backend, side by side, with latency and correctness."""
import streamlit as st

import app_widgets as ui
from sbir_core.app_support import backend_infos, hits
from sbir_core.data.classes import VOCABULARY, display

st.title("⚖️ Compare backends")
st.caption("One sketch, every backend. Pick the sketch's class to mark which results are right.")
gallery, thumbs, problem = ui.active_gallery()

left, right = st.columns([5, 7], gap="large")
with left:
    ui.sketch_input()
    sketch = ui.current_sketch()
    known = sketch.get("label") if sketch else None
    options = [""] + sorted(VOCABULARY)
    label = st.selectbox("What is it?", options, index=options.index(known) if known in options else 0,
                         format_func=lambda c: display(c) if c else "(unknown)",
                         key=f"class-{sketch['hash'] if sketch else 'none'}")
    k = st.slider("Results per backend", 4, 20, 8, step=2, key="compare_k")

with right:
    if problem:
        st.warning(problem)
    elif sketch is None:
        st.info("Draw something, upload a sketch, or click an example: every backend will search it.")
    else:
        for info in backend_infos():
            with st.container(border=True):
                st.markdown(f"#### {info.title}")
                if info.error:
                    st.error(info.error)
                    continue
                outcome = ui.search(info.name, gallery, k)
                if outcome.result is None:
                    (st.info if outcome.blank else st.error)(outcome.error)
                    continue
                r = outcome.result
                stats, grid = st.columns([1, 4])
                with stats:
                    st.metric("Latency", f"{outcome.latency_ms:.0f} ms", help=ui.latency_text(r))
                    correct = hits(r, label or None)
                    if correct is not None:
                        st.metric(f"Correct in top {len(correct)}", f"{sum(correct)}/{len(correct)}")
                    ui.extras_panel(r, compact=True)
                with grid:
                    ui.result_grid(r, thumbs, columns=4 if k <= 8 else 5, label=label or None, compact=True)
