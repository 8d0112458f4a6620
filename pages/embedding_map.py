"""Embedding map: photos and real sketches in the backend's joint space (t-SNE), with your sketch placed live."""
import altair as alt
import pandas as pd
import streamlit as st

import app_widgets as ui
from sbir_core.app_support import backend_infos
from sbir_core.data.classes import display
from sbir_core.tsne_map import EmbeddingMap, build_command, map_path, sketch_vector

st.title("🗺️ Embedding map")
st.caption("Each dot is a gallery photo (●) or a real held-out sketch (▲) in the backend's embedding space, "
           "laid out by t-SNE and coloured by class. Your sketch (◆) lands near what the backend thinks it resembles. "
           "Hover a point to see it.")


@st.cache_resource(show_spinner="Loading the map…")
def get_map(name: str, mtime: float) -> EmbeddingMap:
    return EmbeddingMap.load(name)


@st.cache_data(show_spinner="Preparing map previews…", max_entries=4)
def map_frame(name: str, mtime: float) -> pd.DataFrame:
    m = get_map(name, mtime)
    return pd.DataFrame({"x": m.coords[:, 0], "y": m.coords[:, 1], "class": [display(str(c)) for c in m.labels],
                         "domain": m.domains.astype(str), "id": m.ids.astype(str),
                         "image": [ui.map_thumbnail_url(m, i) for i in range(len(m.ids))]})


infos = [i for i in backend_infos() if i.error is None]
with_maps = [i.name for i in infos if map_path(i.name).is_file()]
without = [i.name for i in infos if i.name not in with_maps and i.name != "random"]
if not with_maps:
    st.info("No embedding map has been built yet. Build one per embedding backend with:\n\n"
            + "\n".join(f"- `{build_command(n)}`" for n in without))
    st.stop()

left, right = st.columns([5, 7], gap="large")
with left:
    current = st.session_state.get("backend")
    name = st.selectbox("Map of", with_maps, index=with_maps.index(current) if current in with_maps else 0,
                        format_func=ui.backend_label, key="map_backend")
    ui.sketch_input()
    if without:
        st.caption("No map yet for " + ", ".join(without) + ": build with "
                   + ", ".join(f"`{build_command(n)}`" for n in without))

mtime = map_path(name).stat().st_mtime
try:
    emb = get_map(name, mtime)
except FileNotFoundError as e:
    right.error(str(e))
    st.stop()
df = map_frame(name, mtime)

layers = []
base = alt.Chart(df).mark_point(filled=True, size=70, opacity=0.75).encode(
    x=alt.X("x:Q", axis=None), y=alt.Y("y:Q", axis=None),
    color=alt.Color("class:N", legend=None, scale=alt.Scale(scheme="tableau20")),
    shape=alt.Shape("domain:N", scale=alt.Scale(domain=["photo", "sketch"], range=["circle", "triangle-up"]),
                    legend=alt.Legend(title=None, orient="top-left")),
    tooltip=["class:N", "domain:N", "id:N", "image:N"])
layers.append(base)

sketch = ui.current_sketch()
note = None
if sketch is not None:
    backend, err = ui.backend_or_message(name)
    if backend is None:
        note = ("error", err)
    elif backend.feature_key != emb.feature_key:
        note = ("warning", f"The map was built with another version of this model; rebuild it with `{build_command(name)}`.")
    else:
        try:
            (px, py), nn = emb.place(sketch_vector(backend, sketch["png"]))
            near = df.iloc[nn]
            here = pd.DataFrame({"x": [px], "y": [py], "class": ["your sketch"], "near": [
                ", ".join(sorted({c for c in near["class"] if c}))]})
            layers.append(alt.Chart(near).mark_point(size=260, color="black", strokeWidth=1.5).encode(x="x:Q", y="y:Q"))
            layers.append(alt.Chart(here).mark_point(shape="diamond", size=700, filled=True, color="black",
                                                     stroke="white", strokeWidth=2).encode(
                x="x:Q", y="y:Q", tooltip=["class:N", alt.Tooltip("near:N", title="nearest classes")]))
            layers.append(alt.Chart(here).mark_text(dy=-24, fontSize=15, fontWeight="bold").encode(
                x="x:Q", y="y:Q", text="class:N"))
            note = ("success", "Nearest on the map: " + ", ".join(
                f"{r['class'] or '?'} ({r['domain']})" for _, r in near.head(5).iterrows()))
        except Exception as e:  # a blank sketch, or a backend that does not embed: say so, no traceback
            note = ("info", f"Your sketch is not on the map: {e}")

with right:
    chart = alt.layer(*layers).properties(height=720 if ui.presenter() else 620).interactive()
    st.altair_chart(chart, width="stretch")
    if note:
        getattr(st, note[0])(note[1])
    n_photo = int((df["domain"] == "photo").sum())
    st.caption(f"{n_photo} photos and {len(df) - n_photo} sketches, {df['class'].nunique()} classes; "
               "new sketches are placed by a similarity-weighted average of their 10 nearest map points "
               "(openTSNE's own initialisation for new points), without re-running t-SNE.")
