"""Readers on the real data, and on the official layouts (built in tmp folders)."""

import numpy as np
from PIL import Image

from sbir_core.data import readers
from sbir_core.data.classes import VOCABULARY, canonical
from sbir_core.data.render import render_strokes
from sbir_core.data.splits import make_split, sketchy_split

from .conftest import need_data


def test_vocabulary_and_name_map():
    assert len(set(VOCABULARY)) == len(VOCABULARY) and "car_(sedan)" in VOCABULARY
    assert canonical("car") == "car_(sedan)" and canonical("Hot air balloon") == "hot-air_balloon"
    assert canonical("alarm clock") == "alarm_clock" and canonical("motorbike") == "motorcycle"
    assert canonical("bird") == "bird" and canonical("sea lion") is None and canonical("squiggle") is None
    assert canonical("wine-bottle") == "wine_bottle" and canonical("tennis racquet") == "racket"


def test_sketchy_pairs_every_sketch_with_its_photo(sketchy_dir):
    photos, sketches = readers.sketchy(sketchy_dir)
    assert len(photos) == 3125 and len({p.label for p in photos}) == 125
    ids = {p.photo_id for p in photos}
    assert len(sketches) >= 2600 and all(s.photo_id in ids for s in sketches)
    assert all(s.label is not None for s in sketches)


def test_sketchy_official_layout(tmp_path):
    for kind, name in (("photo", "n1_2.jpg"), ("sketch", "n1_2-1.png")):
        d = tmp_path / "rendered_256x256" / "256x256" / kind / "tx_000000000000" / "car_(sedan)"
        d.mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(d / name)
    photos, sketches = readers.sketchy(tmp_path)
    assert photos[0].label == "car_(sedan)" and sketches[0].photo_id == "n1_2" == photos[0].photo_id


def test_split_is_by_whole_photo_and_matches_ten_class_split():
    table = sketchy_split()
    root = need_data("sketchy_10class")
    ten = readers.read_split(root / "split.tsv")
    assert all(table[p] == "test" for p, s in ten.items() if s == "test")
    assert all(table[p] in ("train", "val") for p, s in ten.items() if s == "train")
    assert make_split() == table       # the committed table is what the rule makes from the data


def test_quickdraw_bitmaps_both_shapes(tmp_path):
    a = np.zeros((3, 784), np.uint8)
    np.save(tmp_path / "x.npy", a)
    assert readers.quickdraw_bitmaps(tmp_path / "x.npy").shape == (3, 28, 28)
    real = need_data("quickdraw", "numpy_bitmap", "cat.npy")
    assert readers.quickdraw_bitmaps(real, limit=5).shape == (5, 28, 28)


def test_quickdraw_strokes_render_like_the_canvas():
    path = need_data("quickdraw", "simplified", "cat.ndjson")
    d = next(readers.quickdraw_strokes(path))
    assert d["word"] == "cat" and len(d["strokes"]) >= 1
    im = render_strokes(d["strokes"], size=400, line_width=4)
    a = np.asarray(im)
    assert im.size == (400, 400) and a[0, 0] == 255 and (a < 128).mean() > 0.005
    assert len(np.unique(a)) > 10                       # anti-aliased edges, not just black and white


def test_partial_strokes_draw_less_ink():
    strokes = [(np.array([0., 100.]), np.array([0., 0.])), (np.array([0., 100.]), np.array([50., 50.]))]
    full = (np.asarray(render_strokes(strokes, 64)) < 128).sum()
    half = (np.asarray(render_strokes(strokes, 64, keep_fraction=0.5, box=(100, 100))) < 128).sum()
    assert 0 < half < full


def test_shoes():
    root = need_data("shoes")
    photos, sketches = readers.shoes(root)
    assert len(photos) == 304 and len(sketches) >= 700
    assert {s.photo_id for s in sketches} <= {p.photo_id for p in photos}


def test_image_folder_labelled_and_flat(tmp_path):
    (tmp_path / "Teapot").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "Teapot" / "a.jpg")
    Image.new("RGB", (4, 4)).save(tmp_path / "b.png")
    (tmp_path / "notes.txt").write_text("not an image")
    items = readers.image_folder(tmp_path)
    assert sorted((i.path.name, i.label) for i in items) == [("a.jpg", "teapot"), ("b.png", None)]
