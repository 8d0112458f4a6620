"""Teaching a kind from a few drawings and forgetting one (sbir_core.teach, ClassifierBackend.teach/forget),
on real Quick, Draw! drawings of a kind no model here was trained on (triangles) and of trained kinds."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from sbir_core import Gallery, load_backend
from sbir_core.data import readers
from sbir_core.data.preprocess import sketch_input
from sbir_core.data.render import render_canvas
from sbir_core.teach import MAX_TAUGHT, KindEdits, TeachError, kind_name, load_taught, save_taught

from .conftest import need_data


def drawings(kind: str, rows: range) -> list[Image.Image]:
    path = need_data("quickdraw", "simplified", f"{kind}.ndjson")
    return [render_canvas(d["strokes"]) for n, d in enumerate(readers.quickdraw_strokes(path, limit=rows.stop))
            if n in rows]


@pytest.fixture(scope="module")
def classifier():
    return load_backend("classifier")


@pytest.fixture(scope="module")
def triangles() -> list[Image.Image]:
    return drawings("triangle", range(0, 15))


def top(backend, sketch) -> str:
    """The kind the backend reads first."""
    return backend.encode_sketches(sketch_input(sketch, backend.preprocess)[None])[1]["top_classes"][0][0]


def test_taught_kind_is_read_and_the_shared_backend_is_unchanged(classifier, triangles):
    assert "triangle" not in classifier.classes                          # never trained on
    taught = classifier.teach("Triangle", triangles[10:15])
    assert taught.taught() == ["triangle"] and classifier.taught() == []
    assert taught.classes[-1] == "triangle" and len(taught.classes) == len(classifier.classes) + 1
    reads = [top(taught, s) for s in triangles[:10]]                     # held-out drawings, not the examples
    assert reads.count("triangle") >= 6, reads
    assert all(top(classifier, s) != "triangle" for s in triangles[:3])  # the cached backend never learnt it


def png(colour: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(buf, "PNG")
    return buf.getvalue()


def test_taught_kind_photos_come_first(classifier, triangles):
    named = [("a.png", png("green")), ("b.png", png("red")), ("c.png", png("olive")), ("d.png", png("blue"))]
    gallery, _ = Gallery.from_images(named, labels=["apple", "triangle", "apple", "triangle"])
    taught = classifier.teach("triangle", triangles[10:15])
    r = taught.search(triangles[0], gallery, k=4)
    assert r.labels[:2] == ["triangle", "triangle"], r.labels


def test_forget_drops_a_kind_from_the_reading(classifier):
    cats = drawings("cat", range(0, 3))
    assert top(classifier, cats[0]) == "cat"
    smaller = classifier.forget("cat")
    assert all(top(smaller, c) != "cat" for c in cats)
    assert top(classifier, cats[0]) == "cat"
    with pytest.raises(TeachError, match="nothing to forget"):
        smaller.forget("cat")


def test_forgotten_then_taught_reads_by_the_examples_only(classifier):
    cats = drawings("cat", range(0, 8))
    relearnt = classifier.forget("cat").teach("cat", cats[3:8])
    assert relearnt.taught() == ["cat"] and "cat" in relearnt.classes
    assert sum(top(relearnt, c) == "cat" for c in cats[:3]) >= 2


@pytest.mark.parametrize("name,message", [("", "name"), ("   ", "name"), ("<>", "name"), ("x" * 80, "under"),
                                          (None, "name")])
def test_bad_names_are_refused(classifier, triangles, name, message):
    with pytest.raises(TeachError, match=message):
        classifier.teach(name, triangles[:3])


def test_markup_in_a_name_is_text():
    assert kind_name("<b>Robot</b> arm") == "robot_arm"
    assert kind_name("<script>alert(1)</script>lab mixer") == "alert_1_lab_mixer"


def test_bad_examples_are_refused(classifier, triangles):
    blank = Image.new("RGB", (400, 400), "white")
    with pytest.raises(TeachError, match="Example 2"):
        classifier.teach("triangle", [triangles[0], blank])
    with pytest.raises(TeachError, match="at least one"):
        classifier.teach("triangle", [])
    with pytest.raises(TeachError, match="plenty"):
        classifier.teach("triangle", triangles[:11])


def test_teaching_the_same_name_again_replaces_it(classifier, triangles):
    once = classifier.teach("triangle", triangles[10:12]).teach("triangle", triangles[12:15])
    assert once.taught() == ["triangle"]


def test_too_many_taught_kinds_get_a_message():
    edits = KindEdits()
    proto = np.ones(4, np.float32) / 2
    for i in range(MAX_TAUGHT):
        edits = edits.teach(f"k{i}", proto)
    with pytest.raises(TeachError, match="forget one first"):
        edits.teach("one_more", proto)
    assert len(edits.kinds()) == MAX_TAUGHT


def test_backends_that_read_no_kinds_say_so(triangles):
    with pytest.raises(TeachError, match="does not read kinds"):
        load_backend("triplet").teach("triangle", triangles[:3])


def test_kept_kinds_round_trip_through_a_folder(classifier, triangles, tmp_path):
    kinds = {"triangle": triangles[10:13], "robot_arm": triangles[13:14]}
    photos = {"triangle": [("t.JPG", png("red"))]}
    (tmp_path / "stale_kind").mkdir()                                  # a kind kept earlier and since forgotten
    (tmp_path / "stale_kind" / "example_0.png").write_bytes(png("white"))
    assert save_taught(tmp_path, kinds, photos) == 2
    got, got_photos = load_taught(tmp_path)
    assert list(got) == ["robot_arm", "triangle"] and len(got["triangle"]) == 3
    assert got_photos["triangle"][0][0] == "photo_0.jpg" and got_photos["robot_arm"] == []
    taught = classifier.teach("triangle", got["triangle"])
    assert top(taught, triangles[0]) == "triangle"
    assert load_taught(tmp_path / "nowhere") == ({}, {})


def test_a_new_session_starts_from_the_kept_kinds(triangles, monkeypatch, tmp_path):
    """Presenter mode kept a kind on this machine: a fresh app session reads it without teaching."""
    from streamlit.testing.v1 import AppTest
    from .test_app import APP
    save_taught(tmp_path, {"triangle": triangles[10:15]}, {})
    monkeypatch.setenv("SBIR_TAUGHT_DIR", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=180)
    at.session_state["canvas_inject"] = None
    at.run()
    assert not at.exception
    assert any("1 taught" in e.label for e in at.expander), [e.label for e in at.expander]
