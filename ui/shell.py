"""Every page runs inside app.py's navigation and settings, even when Streamlit runs it alone.

A `pages/` folder beside the entry script makes Streamlit start in its older multipage mode: on a
fresh server's first run (and in every AppTest run) a deep link such as /compare executes
pages/compare.py by itself, without the sidebar, the settings or the style. `inside_app()` at the
top of each page notices that app.py is not running and runs it instead; app.py then runs the page
inside its navigation, and the lone run stops.
"""
from __future__ import annotations

import runpy
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import streamlit as st

APP = Path(__file__).resolve().parents[1] / "app.py"
_running = threading.local()          # one script run per thread: app.py marks its own


@contextmanager
def app_running() -> Iterator[None]:
    """app.py wraps the page it runs in this, so the page knows it is inside the app."""
    _running.active = True
    try:
        yield
    finally:
        _running.active = False


def inside_app() -> None:
    """Run app.py (which runs this page in its navigation) when the page was started on its own."""
    if getattr(_running, "active", False):
        return
    runpy.run_path(str(APP), run_name="__main__")
    st.stop()
