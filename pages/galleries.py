"""Galleries: browse the photos being searched, switch galleries, or index your own photos."""
import streamlit as st

from sbir_core import Gallery
from sbir_core.data.classes import canonical, display
from sbir_core.gallery_kinds import filed_kinds, kinds_caption, kinds_count, kinds_summary, store_summary
from sbir_core.uploads import MAX_FILES, collect_images
from ui import canvas, session, shell
from ui.cards import card_label
from ui.catalogue import Thumbnails, gallery_sources, missing_gallery_message

shell.inside_app()

st.title("🖼️ Galleries")
state = st.session_state


def use(key: str) -> None:
    state["gallery_key_next"] = key


sources = gallery_sources()
cards = [(s.key, s.title, s.description) for s in sources]
if state.get("user_gallery") is not None:
    g = state["user_gallery"]
    cards.append((session.USER_GALLERY, "My photos", f"{len(g)} photos you uploaded (kept for this session only)."))
if not any(k == "bundled" for k, _, _ in cards):
    st.warning(missing_gallery_message())
cols = st.columns(max(len(cards), 1))
for col, (key, title, desc) in zip(cols, cards):
    with col.container(border=True):
        st.markdown(f"**{title}**")
        st.caption(desc)
        active = state.get("gallery_key") == key
        st.button("✓ In use" if active else "Use this gallery", key=f"use-{key}", disabled=active,
                  on_click=use, args=(key,), width="stretch")

with st.expander("➕ Add your own photos", expanded=state.get("user_gallery") is None):
    st.caption(f"Images or a zip of images (up to {MAX_FILES}). In a zip, `<class>/<photo>` folders give the "
               "photos their labels. Your photos stay in this browser session and are never saved.")
    files = st.file_uploader("Photos or a zip", accept_multiple_files=True, key="photo_upload",
                             type=["jpg", "jpeg", "png", "webp", "bmp", "gif", "zip"])
    if st.button("Index these photos", type="primary", disabled=not files):
        batch = collect_images((f.name, f.getvalue()) for f in files)
        labels = [canonical(n.replace("\\", "/").split("/")[-2]) if "/" in n.replace("\\", "/") else None
                  for n, _ in batch.images]
        gallery, unreadable = Gallery.from_images(batch.images, labels=labels)
        problems = batch.problems + unreadable
        if len(gallery) == 0:
            st.error("None of the files is a usable photo.")
        else:
            backend, err = session.backend_or_message(state.get("backend", ""))
            if backend is not None:
                bar = st.progress(0.0, text="Indexing…")
                gallery.features(backend, lambda d, t: bar.progress(d / t, text=f"Indexing {d}/{t} photos"))
                bar.empty()
            state["user_gallery"], state["user_thumbs"] = gallery, Thumbnails(gallery)
            state["gallery_key_next"] = session.USER_GALLERY
            state["upload_report"] = (len(gallery), problems)
            st.rerun()
        if problems:
            st.warning("Skipped:\n\n" + "\n".join(f"- {p}" for p in problems[:30])
                       + (f"\n- … and {len(problems) - 30} more" if len(problems) > 30 else ""))
    if "upload_report" in state:
        n, problems = state["upload_report"]
        st.success(f"Indexed {n} photos: they are now the active gallery.")
        if problems:
            st.warning("Skipped:\n\n" + "\n".join(f"- {p}" for p in problems[:30])
                       + (f"\n- … and {len(problems) - 30} more" if len(problems) > 30 else ""))

gallery, thumbs, problem = session.active_gallery()
if problem:
    st.info(problem)
    st.stop()
NO_CLASS = "(no class)"
with st.spinner("Reading the photos' kinds…"):
    kinds = None
    for name in (state.get("backend", ""), "classifier"):     # the picked backend, else the photo labeller's
        backend, _ = session.backend_or_message(name)
        kinds = filed_kinds(gallery, backend) if backend is not None else None
        if kinds is not None:
            break
    kinds = kinds or list(gallery.labels)
count = kinds_count(kinds)
st.subheader(f"{session.gallery_title()} · {len(gallery)} photos · "
             + (f"photos of {len(count)} kind{'s' if len(count) > 1 else ''}" if count else "no kinds known"))
if caption := kinds_caption(gallery, kinds, labeller=backend is not None):
    st.caption(caption)
if gallery.store is not None:
    st.caption(store_summary(gallery.store))
with st.expander(f"🔎 Which kinds has it? ({len(count)})"):
    st.markdown(kinds_summary(count, st.text_input("Find a kind", key="find_kind", placeholder="e.g. hat, pizza, tent")))
labels = sorted({display(k) if k else NO_CLASS for k in kinds})
c1, c2 = st.columns([3, 1])
pick = c1.selectbox("Class", ["(all)"] + labels, key="browse_class")
shown = [i for i in range(len(gallery)) if pick == "(all)" or (display(kinds[i]) if kinds[i] else NO_CLASS) == pick]
per_page = 32
pages = max(1, (len(shown) + per_page - 1) // per_page)
page = c2.number_input(f"Page (of {pages})", 1, pages, 1, key=f"browse_page-{pick}")
items = shown[(page - 1) * per_page: page * per_page]
columns = canvas.result_columns(wide=8)
with st.container(key="results-gallery"):
    for row in range(0, len(items), columns):
        cols = st.columns(columns)
        for col, i in zip(cols, items[row:row + columns]):
            with col:
                st.image(thumbs(i), width="stretch")
                info = gallery.info[i] if gallery.info else {}
                name = card_label(kinds[i], gallery.display_label(i))
                st.caption(f"**{name}**" + (f" · {info['licence']}" if info.get("licence") else ""))
