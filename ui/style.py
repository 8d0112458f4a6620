"""The app's CSS: style.css for every page, presenter.css on top in presenter mode."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from .session import presenter

HERE = Path(__file__).parent
CSS = (HERE / "style.css").read_text()
PRESENTER_CSS = (HERE / "presenter.css").read_text()


def page_style() -> None:
    """Tighter cards, the reading in large type, a 2-3 column result grid on phones (Streamlit stacks
    columns one per row below 640 px); bigger text and no sidebar in presenter mode."""
    css = CSS + (PRESENTER_CSS if presenter() else "")
    st.markdown(f"<style>{css}</style>", unsafe_allow_html=True)
