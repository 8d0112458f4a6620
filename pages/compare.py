"""Compare: the same sketch through every backend: a summary table on top (best first, baselines last),
then one compact strip of results per backend."""
import pandas as pd
import streamlit as st

from sbir_core.data.classes import VOCABULARY, display
from ui import canvas, results, session, shell
from ui.catalogue import backend_infos
from ui.reading import CompareRow, compare_order, hits, reading_summary
from ui.reports import load_report

shell.inside_app()

st.title("⚖️ Compare backends")
st.caption("One sketch, every backend. Pick the sketch's class to count which results are right.")
gallery, thumbs, problem = session.active_gallery()

left, right = st.columns([4, 8], gap="large")
with left:
    canvas.sketch_input()
    sketch = session.current_sketch()
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
        report = (load_report() or {}).get("backends", {})
        rows, outcomes, broken = [], {}, []
        for info in backend_infos():
            if info.error:
                broken.append(info)
                continue
            outcome = session.search(info.name, gallery, k)
            if outcome.result is None:
                broken.append(info)
                outcomes[info.name] = outcome
                continue
            correct = hits(outcome.result, label or None)
            rows.append(CompareRow(info.name, info.title, reading_summary(session.reading(info.name, gallery), label or None),
                                   None if correct is None else sum(correct), len(outcome.result.ids),
                                   outcome.latency_ms, info.baseline or info.name == "random",
                                   float(report.get(info.name, {}).get("mAP@all", 0.0))))
            outcomes[info.name] = outcome
        rows = compare_order(rows)
        if rows:
            table = pd.DataFrame({
                "backend": [r.title for r in rows],
                "sees": [r.sees for r in rows],
                f"right in top {k}": [f"{r.hits}/{r.k}" if r.hits is not None else "–" for r in rows],
                "latency (ms)": [round(r.latency_ms or 0.0) for r in rows]})
            best = 0 if not rows[0].baseline else None
            st.dataframe(table.style.apply(
                lambda row: ["background-color: #e6f4ea; font-weight: 600" if row.name == best else ""] * len(row),
                axis=1), hide_index=True, width="stretch")
            st.caption(("Best first: most right in the top K, " if label else
                        "Ordered by mAP@all on held-out Sketchy sketches (pick the class to rank by this sketch); ")
                       + "baselines last. “sees”: a classifier's top classes, else the classes of the nearest photos "
                       "(✅/❌: the first is the sketch's class, once it is known).")
        for r in rows:
            res = outcomes[r.name].result
            with st.container(border=True, key=f"strip-{r.name}"):
                st.markdown(f"**{r.title}** · {r.latency_ms:.0f} ms"
                            + (f" · {r.hits}/{r.k} right" if r.hits is not None else "")
                            + (f" · sees {r.sees}" if r.sees != "–" else ""), help=results.latency_text(res))
                imaginary = res.extras.get("imaginary")
                if imaginary is not None:
                    pic, grid = st.columns([1, 7])
                    pic.image(imaginary, caption="imagined", width="stretch")
                else:
                    grid = st.container()
                with grid:
                    results.result_grid(res, thumbs, columns=min(k, canvas.result_columns(wide=8 if imaginary is not None else 10)),
                                   label=label or None, compact=True, gallery=gallery, key=f"results-{r.name}")
        for info in broken:
            o = outcomes.get(info.name)
            st.error(f"{info.title}: {info.error or (o.error if o else 'no result')}")
