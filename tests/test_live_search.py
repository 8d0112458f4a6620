"""The Search page's feedback loop, without a browser: thumbnails encoded once per gallery (files
served by URL, or inline), the result grid as one block of HTML, and the browser benchmark's
statistics (tests/test_browser.py drives the real thing)."""
from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import pytest
from PIL import Image

from sbir_core.bench.browser import markdown, pct, summary
from sbir_core.bench.browser_visitor import DRAWINGS
from ui.catalogue import Thumbnails, bundled_gallery_present

st_testing = pytest.importorskip("streamlit.testing.v1")
APP = str(Path(__file__).resolve().parent.parent / "app.py")


def test_thumbnail_data_urls_are_encoded_once(tmp_path, monkeypatch):
    from sbir_core import Gallery
    for i, colour in enumerate([(200, 30, 30), (30, 30, 200)]):
        Image.new("RGB", (40, 30), colour).save(tmp_path / f"p{i}.jpg")
    thumbs = Thumbnails(Gallery.from_folder(tmp_path), size=16)
    url = thumbs.data_url(1)
    assert url.startswith("data:image/jpeg;base64,")
    im = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
    assert im.size == (16, 16) and im.getpixel((8, 8))[2] > 150           # photo 1, the blue one
    calls = []
    monkeypatch.setattr(Thumbnails, "__call__", lambda self, i: calls.append(i) or b"")
    assert thumbs.data_url(1) is url and calls == []                       # served from the cache, not re-encoded
    assert thumbs.data_url(0) != url and calls == [0]


def test_thumbnail_files_are_written_once_and_served_by_url(tmp_path, monkeypatch):
    from sbir_core import Gallery
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, colour in enumerate([(200, 30, 30), (30, 30, 200)]):
        Image.new("RGB", (40, 30), colour).save(photos / f"p{i}.jpg")
    static = tmp_path / "static"
    thumbs = Thumbnails(Gallery.from_folder(photos), size=16, static_dir=static)
    url = thumbs.src(1)
    assert url.startswith("app/static/thumbs/") and url.endswith("/1.jpg")
    path = static / url.removeprefix("app/static/")
    im = Image.open(path).convert("RGB")
    assert im.size == (16, 16) and im.getpixel((8, 8))[2] > 150           # photo 1, the blue one
    calls = []
    monkeypatch.setattr(Thumbnails, "__call__", lambda self, i: calls.append(i) or b"")
    assert thumbs.src(1) == url and calls == []                            # neither re-encoded nor rewritten
    again = Thumbnails(Gallery.from_folder(photos), size=16, static_dir=static)
    assert again.src(1) == url and calls == []                             # another session: the file is there
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the folder should be")               # the folder cannot be made
    monkeypatch.undo()
    inline = Thumbnails(Gallery.from_folder(photos), size=16, static_dir=blocked)
    assert inline.src(0).startswith("data:image/jpeg;base64,")            # falls back to inline thumbnails


@pytest.mark.skipif(not bundled_gallery_present(), reason="bundled gallery not built")
def test_result_grid_is_one_block_of_cards_with_thumbnails_by_url():
    from ui import session
    stroke = {"type": "path", "stroke": "#000000", "strokeWidth": 6,
              "path": [["M", 100, 100], ["Q", 200, 110, 200, 110], ["L", 300, 260]]}
    at = st_testing.AppTest.from_file(APP, default_timeout=180)
    at.session_state["canvas_inject"] = {"objects": [stroke]}
    at.run()
    assert not at.exception
    grids = [m.value for m in at.markdown if "<div class='result-grid'" in m.value]
    assert len(grids) == 1
    k = int(at.session_state["k"])
    assert grids[0].count("class='result-card") == k                     # (after a line, 'result-card unlikely')
    srcs = re.findall(r"<img src='([^']+)'", grids[0])
    assert len(srcs) == k and all(s.startswith("app/static/thumbs/") for s in srcs)   # .streamlit: static serving on
    for src in srcs:                                                        # each a thumbnail file Streamlit serves
        assert Image.open(session.THUMBS_DIR / src.removeprefix("app/static/")).size == (256, 256)
    assert grids[0].count("class='card-name'") == k and grids[0].count("class='card-score'") == k


def test_browser_bench_percentiles_and_summary():
    assert pct([], 50) is None and pct([5.0], 90) == 5.0
    assert pct([100, 200, 300, 400], 50) == 250 and pct(list(range(1, 11)), 90) == 9.1
    samples = [{"first": 100.0, "settled": 300.0}, {"first": 300.0, "settled": 500.0},
               {"first": None, "settled": 200.0}, {"timeout": True}]
    s = summary(samples)
    assert s["n"] == 4 and s["first_p50"] == 200 and s["settled_p50"] == 300 and s["unchanged"] == 1 and s["timeouts"] == 1
    table = markdown({"one": {"stroke": s, "lost_strokes": {"lost": 0, "drawings": 3, "gap_ms": 60}}},
                     before={"one": {"stroke": {**s, "first_p50": 400.0, "first_p90": 500.0}}})
    assert "| 1 visitor: pen lift | 400 / 500 |" in table and "0 of 3 drawings" in table
    assert all(0 <= x <= 1 and 0 <= y <= 1 for strokes in DRAWINGS.values() for st in strokes for x, y in st)
