"""Embedding map: photos and real sketches in the backend's joint space (t-SNE), with your sketch placed live."""
import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from sbir_core.data.classes import display
from sbir_core.tsne_map import EmbeddingMap, map_path, sketch_vector
from ui import canvas, map_view, session, shell
from ui.catalogue import backend_infos
from ui.reports import load_report

shell.inside_app()

st.title("🗺️ Embedding map")
st.caption("Each dot is a gallery photo (●) or a real held-out sketch (▲) in the backend's embedding space, "
           "laid out by t-SNE; the 10 classes nearest your sketch (or the 10 biggest) in colour, the rest grey. "
           "Your sketch (◆) lands near what the backend thinks it resembles. Hover a point to see it.")


@st.cache_resource(show_spinner="Loading the map…")
def get_map(name: str, mtime: float) -> EmbeddingMap:
    return EmbeddingMap.load(name)


@st.cache_data(show_spinner="Preparing map previews…", max_entries=4)
def map_frame(name: str, mtime: float) -> pd.DataFrame:
    m = get_map(name, mtime)
    return pd.DataFrame({"x": m.coords[:, 0], "y": m.coords[:, 1], "class": [display(str(c)) for c in m.labels],
                         "domain": m.domains.astype(str), "id": m.ids.astype(str),
                         "image": [map_view.map_thumbnail_url(m, i) for i in range(len(m.ids))]})


infos = [i for i in backend_infos() if i.error is None]
mean_ap = {n: m.get("mAP@all") or 0.0 for n, m in ((load_report() or {}).get("backends") or {}).items()
           if isinstance(m, dict)}
with_maps = sorted((i.name for i in infos if map_path(i.name).is_file()),     # the best-measured space first:
                   key=lambda n: -mean_ap.get(n, 0.0))                        # the joint embedding, not a baseline
if not with_maps:
    st.info("No embedding map comes with these models yet: the other pages work without one.")
    st.stop()

left, right = st.columns([5, 7], gap="large")
with left:
    current = st.session_state.get("backend")
    name = st.selectbox("Map of", with_maps, index=with_maps.index(current) if current in with_maps else 0,
                        format_func=session.backend_label, key="map_backend")
    canvas.sketch_input()

mtime = map_path(name).stat().st_mtime
try:
    emb = get_map(name, mtime)
except FileNotFoundError as e:
    right.error(str(e))
    st.stop()
df = map_frame(name, mtime)

sketch = session.current_sketch()
note, place, nn = None, None, None
if sketch is not None:
    backend, err = session.backend_or_message(name)
    if backend is None:
        note = ("error", err)
    elif backend.feature_key != emb.feature_key:
        note = ("warning", "This map was drawn for an earlier version of this model, so your sketch is not placed on it.")
    else:
        try:
            (px, py), nn = emb.place(sketch_vector(backend, sketch["png"]))
            place = (float(px), float(py))
        except Exception as e:  # a blank sketch, or a backend that does not embed: say so, no traceback
            note = ("info", f"Your sketch is not on the map: {e}")

# colour only the classes near the sketch (or the 10 biggest), with a legend; every other class grey
coloured = map_view.map_classes_to_colour(df["x"], df["y"], list(df["class"]), place, n=10,
                                          first=list(df["class"].iloc[nn]) if nn is not None else ())
df = df.assign(shown=[c if c in coloured else "other classes" for c in df["class"]])
xs = list(df["x"]) + ([place[0]] if place is not None else [])
ys = list(df["y"]) + ([place[1]] if place is not None else [])
xr, yr = (float(np.min(xs)), float(np.max(xs))), (float(np.min(ys)), float(np.max(ys)))
pad_x, pad_y = 0.06 * (xr[1] - xr[0]), 0.08 * (yr[1] - yr[0])
x_scale = alt.Scale(domain=[xr[0] - pad_x, xr[1] + pad_x], nice=False)
y_scale = alt.Scale(domain=[yr[0] - pad_y, yr[1] + pad_y], nice=False)
palette = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#17becf"]
colour = alt.Color("shown:N", title="class", sort=coloured + ["other classes"],
                   scale=alt.Scale(domain=coloured + ["other classes"], range=palette[:len(coloured)] + ["#d4d4d8"]),
                   legend=alt.Legend(orient="right", symbolLimit=12))
grey = df[df["shown"] == "other classes"]
bright = df[df["shown"] != "other classes"]
enc = dict(x=alt.X("x:Q", axis=None, scale=x_scale), y=alt.Y("y:Q", axis=None, scale=y_scale), color=colour,
           shape=alt.Shape("domain:N", scale=alt.Scale(domain=["photo", "sketch"], range=["circle", "triangle-up"]),
                           legend=alt.Legend(title=None, orient="right")),
           tooltip=["class:N", "domain:N", "id:N", "image:N"])
layers = [alt.Chart(grey).mark_point(filled=True, size=45, opacity=0.45).encode(**enc),
          alt.Chart(bright).mark_point(filled=True, size=75, opacity=0.85).encode(**enc)]

if place is not None:
    (px, py) = place
    near = df.iloc[nn]
    here = pd.DataFrame({"x": [px], "y": [py], "label": ["your sketch"], "near": [
        ", ".join(sorted({c for c in near["class"] if c}))]})
    spot = map_view.map_label_placement(px, py, xr, yr)
    xy = dict(x=alt.X("x:Q", scale=x_scale), y=alt.Y("y:Q", scale=y_scale))
    layers.append(alt.Chart(near).mark_point(size=260, color="black", strokeWidth=1.5).encode(**xy))
    layers.append(alt.Chart(here).mark_point(shape="diamond", size=700, filled=True, color="black",
                                             stroke="white", strokeWidth=2).encode(
        **xy, tooltip=["label:N", alt.Tooltip("near:N", title="nearest classes")]))
    layers.append(alt.Chart(here).mark_text(fontSize=15, fontWeight="bold", align=spot["align"], dx=spot["dx"],
                                            dy=spot["dy"]).encode(**xy, text="label:N"))
    note = ("success", "Nearest on the map: " + ", ".join(
        f"{r['class'] or '?'} ({r['domain']})" for _, r in near.head(5).iterrows()))

with right:
    chart = alt.layer(*layers).properties(height=720 if session.presenter() else 620).interactive()
    st.altair_chart(chart, width="stretch")
    if note:
        getattr(st, note[0])(note[1])
    n_photo = int((df["domain"] == "photo").sum())
    st.caption(f"{n_photo} photos and {len(df) - n_photo} sketches, {df['class'].nunique()} classes; "
               "new sketches are placed by a similarity-weighted average of their 10 nearest map points "
               "(openTSNE's own initialisation for new points), without re-running t-SNE.")
