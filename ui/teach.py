"""The Search page's "Teach it" panel: name a kind, draw a few examples, and from the next stroke the
reading knows it (`Backend.teach`, weight imprinting: sbir_core.teach). Taught kinds live in this
browser session; the shared backends other visitors use never change. Presenter mode can keep them
in a folder on this machine (`sbir_core.teach.taught_dir`), which every new session starts from.

Session state: `teach_examples` (the drawings collected so far), `taught_kinds` ({kind: drawings}, in
teaching order), `taught_photos` ({kind: [(file name, bytes)]}: photos of it, searched with the gallery),
`teach_version` (bumped on every change: keys the session's taught backends, gallery and results).
"""
from __future__ import annotations

import html
from typing import Any, Callable

import streamlit as st

from sbir_core import Gallery
from sbir_core.backends import Backend
from sbir_core.data.classes import display
from sbir_core.data.preprocess import ImageInputError, load_image
from sbir_core.teach import MAX_EXAMPLES, TeachError, kind_name, load_taught, save_taught, taught_dir

from .catalogue import Thumbnails

SUGGESTED_EXAMPLES = 3


def taught_kinds() -> dict[str, list[Any]]:
    """This session's taught kinds ({kind: example drawings}); a new session starts from the kinds
    kept on this machine (nothing, unless a presenter kept some)."""
    state = st.session_state
    if "taught_kinds" not in state:
        try:
            state["taught_kinds"], state["taught_photos"] = load_taught(taught_dir())
        except OSError:
            state["taught_kinds"], state["taught_photos"] = {}, {}
    return state["taught_kinds"]


def session_backend(name: str, shared: Backend) -> Backend:
    """The backend as this session sees it: the shared one, taught this session's kinds (a copy, built
    once per change). A backend that cannot be taught stays the shared one."""
    state = st.session_state
    kinds = taught_kinds()
    if not kinds:
        return shared
    cache = state.setdefault("taught_backends", {})      # {name: (teach version, backend)}
    if cache.get(name, (None,))[0] != teach_version():
        backend = shared
        try:
            for kind, examples in kinds.items():
                backend = backend.teach(kind, examples)
        except TeachError:
            backend = shared
        cache[name] = (teach_version(), backend)
    return cache[name][1]


def session_gallery(gallery: Gallery, thumbs: Thumbnails) -> tuple[Gallery, Thumbnails, list[str]]:
    """The gallery as this session searches it: with the photos of its taught kinds (built once per
    change; the shared gallery's features are reused, only these photos are indexed), and messages
    naming photos that could not be read."""
    state = st.session_state
    kinds = taught_kinds()
    photos = {k: v for k, v in (state.get("taught_photos") or {}).items() if v and k in kinds}
    if not photos or gallery.store is not None:
        return gallery, thumbs, []
    key = (gallery.content_key, teach_version())
    cached = state.get("taught_gallery")
    if cached is None or cached[0] != key:
        named = [p for v in photos.values() for p in v]
        g, problems = gallery.with_photos(named, [k for k, v in photos.items() for _ in v])
        cached = state["taught_gallery"] = (key, g, Thumbnails(g), problems)
    return cached[1], cached[2], cached[3]


def teach_version() -> int:
    return int(st.session_state.get("teach_version", 0))


def _changed() -> None:
    st.session_state["teach_version"] = teach_version() + 1


def _add_example(drawing: Callable[[], Any], clear: Callable[[], None]) -> None:
    examples = st.session_state.setdefault("teach_examples", [])
    sketch = drawing()
    if sketch is None:
        st.session_state["teach_message"] = ("warning", "Draw an example on the canvas first.")
        return
    if len(examples) >= MAX_EXAMPLES:
        st.session_state["teach_message"] = ("warning", f"{MAX_EXAMPLES} examples are plenty: teach it now.")
        return
    examples.append(sketch["png"])
    st.session_state["teach_message"] = None
    clear()                                                     # a fresh canvas for the next example


def _teach(shared: Backend | None) -> None:
    state = st.session_state
    examples = list(state.get("teach_examples") or [])
    try:
        name = kind_name(state.get("teach_name") or "")
        if shared is None:
            raise TeachError("No backend is loaded.")
        shared.teach(name, examples)                            # the checks and messages, before keeping anything
    except TeachError as e:
        state["teach_message"] = ("warning", str(e))
        return
    kinds = dict(taught_kinds())
    again = name in kinds
    kinds.pop(name, None)
    kinds[name] = examples
    photos = dict(state.get("taught_photos") or {})
    upload = state.get(f"teach_photo_upload_{state.get('teach_photo_upload_key', 0)}") or []
    photos[name] = [(f.name, f.getvalue()) for f in upload] or photos.get(name, [])
    state["taught_kinds"], state["taught_photos"], state["teach_examples"], state["teach_name"] = kinds, photos, [], ""
    state["teach_photo_upload_key"] = state.get("teach_photo_upload_key", 0) + 1           # an empty uploader next time
    state["teach_message"] = ("success", f"{'Re-taught' if again else 'Taught'} “{display(name)}” from "
                                         f"{len(examples)} drawing{'s' if len(examples) > 1 else ''}: draw one.")
    _changed()


def _remove(kind: str) -> None:
    kinds = dict(taught_kinds())
    kinds.pop(kind, None)
    st.session_state["taught_kinds"] = kinds
    st.session_state["teach_message"] = ("info", f"Forgot “{display(kind)}”.")
    _changed()


def _keep() -> None:
    """Presenter mode: keep this session's taught kinds on this machine for every new session."""
    state = st.session_state
    try:
        n = save_taught(taught_dir(), taught_kinds(), state.get("taught_photos") or {})
        state["teach_message"] = ("success", f"Kept {n} kind{'s' if n != 1 else ''} in {taught_dir()}: every new "
                                             "session here starts with them.")
    except (OSError, TeachError) as e:
        state["teach_message"] = ("warning", f"Could not keep them: {e}")


def _uploaded() -> None:
    """New files in the drawings uploader become examples (it keeps the earlier ones listed: each once)."""
    examples = st.session_state.setdefault("teach_examples", [])
    seen = st.session_state.setdefault("teach_uploads_seen", set())
    for f in st.session_state.get("teach_upload") or []:
        if len(examples) >= MAX_EXAMPLES:
            break
        if f.file_id in seen:
            continue
        seen.add(f.file_id)
        try:
            examples.append(load_image(f.getvalue()))
        except ImageInputError as e:
            st.session_state["teach_message"] = ("warning", f"{f.name}: {e}")


def panel(shared: Backend | None, drawing: Callable[[], Any], clear: Callable[[], None], presenter: bool = False) -> None:
    """The expander under the canvas. `drawing()`: the canvas's drawing when the button is clicked
    (a stroke reruns only the canvas's fragment, not this panel), None when blank; `clear()` empties it."""
    state = st.session_state
    kinds = taught_kinds()
    title = "🧑‍🏫 Teach it a kind" + (f" · {len(kinds)} taught" if kinds else "")
    with st.expander(title, expanded=bool(state.get("teach_examples")) or bool(state.get("teach_message"))):
        if shared is not None and not shared.can_teach:
            st.caption("This backend does not read kinds: switch to the classifier to teach one.")
            return
        st.text_input("Name of the kind", key="teach_name", max_chars=60, placeholder="e.g. robot, our logo")
        examples = state.get("teach_examples") or []
        st.caption(f"Draw it, then add the drawing as an example: {SUGGESTED_EXAMPLES}-5 examples work best "
                   f"({len(examples)} so far).")
        if examples:
            st.image([e if not isinstance(e, bytes) else load_image(e) for e in examples], width=56)
        with st.container(horizontal=True, gap="small"):
            st.button("➕ Add this drawing", key="teach_add", on_click=_add_example, args=(drawing, clear),
                      disabled=len(examples) >= MAX_EXAMPLES)
            st.button("🧑‍🏫 Teach it", key="teach_go", type="primary", on_click=_teach, args=(shared,),
                      disabled=not examples)
            if examples:
                st.button("Start over", key="teach_reset", on_click=lambda: state.update(teach_examples=[]))
        st.file_uploader("…or upload drawings of it", type=["png", "jpg", "jpeg", "webp"], accept_multiple_files=True,
                         key="teach_upload", on_change=_uploaded)
        st.file_uploader("Photos of it to search (optional)", type=["png", "jpg", "jpeg", "webp"],
                         accept_multiple_files=True, key=f"teach_photo_upload_{state.get('teach_photo_upload_key', 0)}",
                         help="They join the gallery for you only; the reading finds them first once it knows the kind.")
        message = state.get("teach_message")
        if message:
            getattr(st, message[0])(message[1])
        if kinds:
            st.caption("Taught here (only this session sees them" + (", unless kept)" if presenter else ")") + ":")
            photos = state.get("taught_photos") or {}
            for kind, ex in kinds.items():
                n_photos = len(photos.get(kind) or [])
                with st.container(horizontal=True, vertical_alignment="center", gap="small"):
                    st.markdown(f"**{html.escape(display(kind))}** · {len(ex)} drawing{'s' if len(ex) > 1 else ''}"
                                + (f" · {n_photos} photo{'s' if n_photos > 1 else ''}" if n_photos else ""))
                    st.button("Forget", key=f"teach_forget_{kind}", on_click=_remove, args=(kind,))
        if presenter:
            st.button("💾 Keep on this machine", key="teach_keep", on_click=_keep,
                      help=f"Saves the taught kinds (and their photos) to {taught_dir()}; every new session starts with them.")
