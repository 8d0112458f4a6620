"""Evaluation: every backend and baseline on the same held-out sketches (from the evaluation CLI)."""
import altair as alt
import pandas as pd
import streamlit as st

from ui import session, shell
from ui.catalogue import backend_infos
from ui.reports import METRICS_FILE, curve_series, load_curves, load_report, metrics_rows, per_class_rows

shell.inside_app()

st.title("📊 Evaluation")
report = load_report()
if report is None:
    st.info(f"No evaluation report at `models/{METRICS_FILE.name}` yet. Produce one with:\n\n"
            "```\npython -m sbir_core.evaluate --backends all --photos ../shared/data/sketchy/photo "
            f"--sketches ../shared/data/sketchy/sketch --out models/{METRICS_FILE.name}\n```")
else:
    st.caption(f"{report.get('queries', '?')} held-out sketches ({report.get('split', 'test')} split) against "
               f"{report.get('gallery', '?')} photos. mAP@all and P@20 count a photo of the sketch's class as "
               "correct; acc@K asks whether the sketch's own photo is in the top K.")
    table = pd.DataFrame(metrics_rows(report))
    table.insert(1, "title", [session.backend_label(n) for n in table["backend"]])
    fmt = {c: st.column_config.NumberColumn(c, format="%.3f") for c in table.columns if c not in ("backend", "title")}
    if "ms/query" in table:
        fmt["ms/query"] = st.column_config.NumberColumn("ms/query", format="%.1f", help="mean time per sketch in the run")
    st.dataframe(table, hide_index=True, width="stretch", column_config=fmt)

    for metric in [c for c in ("mAP@all", "P@20", "acc@10") if c in table]:     # one chart each: a faceted
        st.altair_chart(alt.Chart(table).mark_bar().encode(                      # chart ignores the page's width
            x=alt.X(f"{metric}:Q", title=metric, scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("backend:N", sort="-x", title=None, axis=alt.Axis(labelOverlap=False)),   # every backend named
            color=alt.Color("backend:N", legend=None),
            tooltip=["backend", alt.Tooltip(f"{metric}:Q", format=".3f")]).properties(height=26 * len(table)),
            width="stretch", height=26 * len(table) + 60)

    st.subheader("Per class")
    pc = pd.DataFrame(per_class_rows(report))
    if pc.empty:
        st.caption("The report has no per-class breakdown.")
    else:
        names = [c for c in pc.columns if c != "class"]
        by = st.selectbox("Sort by", names, key="per_class_sort", format_func=session.backend_label)
        pc = pc.sort_values(by, ascending=False)
        st.dataframe(pc, hide_index=True, width="stretch", height=420, column_config={
            n: st.column_config.ProgressColumn(n, format="%.2f", min_value=0.0, max_value=1.0) for n in names})

st.subheader("Retrieval by similarity")
st.caption("The Search page's “By similarity” switch returns every photo whose cosine similarity to the sketch "
           "is at least a threshold. Precision: the share of those photos that show the drawn kind; recall: the "
           "share of the kind's photos returned. Measured on the validation sketches against Sketchy photos; "
           "the slider starts at the best F1 (the rule).")
for info in backend_infos():
    curve = info.meta.get("threshold_curve") or []
    if not curve or "precision" not in curve[0]:
        continue
    long = pd.DataFrame(curve).melt(id_vars=["threshold"], value_vars=["precision", "recall"], var_name="series",
                                    value_name="share")
    start = float(info.meta.get("default_threshold", 0.5))
    lines = alt.Chart(long).mark_line(point=True).encode(
        x=alt.X("threshold:Q", title="similarity at least"), y=alt.Y("share:Q", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("series:N", legend=alt.Legend(orient="bottom", title=None)),
        tooltip=["threshold", "series", alt.Tooltip("share:Q", format=".3f")])
    rule = alt.Chart(pd.DataFrame({"threshold": [start]})).mark_rule(strokeDash=[4, 4]).encode(x="threshold:Q")
    with st.container(border=True):
        st.markdown(f"**{info.title}** · slider starts at {start:.2f}")
        st.altair_chart((lines + rule).properties(height=240), width="stretch")

st.subheader("Training curves")
shown = 0
for info in backend_infos():
    curves = load_curves(info.name)
    if not curves:
        continue
    shown += 1
    df = pd.DataFrame(curves)
    x, losses, quality = curve_series(curves)
    with st.container(border=True):
        st.markdown(f"**{info.title}**")
        for col, (title, series) in zip(st.columns(2), (("loss", losses), ("quality", quality))):
            if not series:
                continue
            long = df.melt(id_vars=[x], value_vars=series, var_name="series", value_name=title).dropna()
            col.altair_chart(alt.Chart(long).mark_line(point=True).encode(
                x=f"{x}:Q", y=alt.Y(f"{title}:Q", title=title),
                color=alt.Color("series:N", legend=alt.Legend(orient="bottom", title=None)),
                tooltip=[x, "series", alt.Tooltip(f"{title}:Q", format=".4f")]).properties(height=260),
                width="stretch")
if not shown:
    st.caption("No backend has training curves yet (trained backends write `models/<name>_curves.json`).")
