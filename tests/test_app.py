"""AppTest for every page: the canvas does not render under AppTest, so a drawing (Fabric.js JSON,
what the component returns) is injected through session state."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from sbir_core import load_backend
from ui.catalogue import bundled_gallery_present
from ui.drawing import render_drawing
from sbir_core.uploads import collect_images

st_testing = pytest.importorskip("streamlit.testing.v1")
APP = str(Path(__file__).resolve().parent.parent / "app.py")
PAGES = ["pages/search.py", "pages/compare.py", "pages/embedding_map.py", "pages/evaluation.py",
         "pages/galleries.py"]


def stroke(points):
    return {"type": "path", "stroke": "#000000", "strokeWidth": 6,
            "path": [["M", *points[0]]] + [["Q", *p, *p] for p in points[1:-1]] + [["L", *points[-1]]]}


DRAWING = {"objects": [stroke([(100, 100), (200, 110), (300, 200), (250, 300)]),
                       stroke([(120, 300), (220, 250), (330, 120)])]}


def app(drawing=DRAWING):
    at = st_testing.AppTest.from_file(APP, default_timeout=180)
    if drawing is not None:
        at.session_state["canvas_inject"] = drawing
    return at


needs_gallery = pytest.mark.skipif(not bundled_gallery_present(), reason="bundled gallery not built")


@needs_gallery
def test_search_shows_photos_for_a_drawing():
    at = app().run()
    assert not at.exception
    assert any("class='card-name'" in m.value for m in at.markdown), "no result cards"
    assert not any("unlabelled" in m.value for m in at.markdown)
    assert any(m.label == "Query latency" for m in at.metric)


@needs_gallery
def test_blank_canvas_is_a_hint_not_an_error():
    at = app({"objects": []}).run()
    assert not at.exception and not at.error
    assert any("Draw something" in m.value for m in at.markdown)


@needs_gallery
@pytest.mark.parametrize("page", PAGES)
def test_every_page_runs_without_exception(page):
    at = app().run()
    at.switch_page(page).run()
    assert not at.exception, at.exception


@needs_gallery
def test_compare_marks_correct_results():
    at = app().run()
    at.switch_page("pages/compare.py").run()
    next(s for s in at.selectbox if s.label == "What is it?").set_value("apple").run()
    assert not at.exception
    table = at.dataframe[0].value
    assert not at.error, [e.value for e in at.error]            # a backend that fails shows an error: none may
    assert len(table) == len(__import__("sbir_core").available_backends(include_baselines=True))   # every one
    assert list(table.columns) == ["backend", "sees", "right in top 8", "latency (ms)"]
    assert {b.split()[0] for b in table["backend"].iloc[-2:]} == {"Random", "Pretrained"}   # baselines last
    assert all("/" in v for v in table["right in top 8"])
    assert any("✅" in m.value or "❌" in m.value for m in at.markdown if "card-name compact" in m.value)


SHIPPED = ["classifier", "classifier_small", "instance", "triplet", "cgan", "context",
           "pretrained", "random"]


def test_every_shipped_backend_is_available():
    """A backend whose model files went missing would otherwise drop out of every parametrised test."""
    from sbir_core import available_backends
    assert sorted(available_backends(include_baselines=True)) == sorted(SHIPPED)


@needs_gallery
@pytest.mark.parametrize("name", SHIPPED)
def test_every_backend_searches(name):
    at = app()
    at.session_state["backend_picker"] = name
    at.run()
    assert not at.exception and at.session_state["backend"] == name
    assert not at.error, [e.value for e in at.error]         # a failed search shows an error: that is a failure
    assert sum(m.value.count("class='card-name'") for m in at.markdown) >= 8, name   # result cards, not the CSS
    reading = [m.value for m in at.markdown if m.value.startswith("<div class='sketch-reading'>")]
    assert reading or name == "random", name                # what the backend sees, next to the canvas
    for page in ("pages/galleries.py", "pages/evaluation.py"):          # the picked backend on every page
        at.switch_page(page).run()                                              # (Compare and the map: below)
        assert not at.exception and not at.error and at.session_state["backend"] == name, (name, page)


@needs_gallery
def test_search_by_similarity_threshold():
    at = app()
    at.session_state["backend_picker"] = "triplet"
    at.run()
    next(t for t in at.toggle if t.label == "By similarity").set_value(True).run()
    heading = lambda: next(h.value for h in at.subheader if "similarity" in h.value or "Top" in h.value)
    start = load_backend("triplet").default_threshold                  # chosen on val, in triplet.json
    assert not at.exception and f"similarity ≥ {start:.2f}" in heading()
    at.slider(key="threshold_triplet").set_value(1.0).run()         # nothing is that similar: a hint, not an error
    assert not at.exception and heading().startswith("0 photos") and any("lower the threshold" in i.value for i in at.info)
    at.slider(key="threshold_triplet").set_value(0.0).run()         # everything qualifies: capped, and it says so
    assert not at.exception and "shown" in heading()
    at = app()                                               # instance cosines are lower: it starts lower
    at.session_state["backend_picker"] = "instance"
    at.run()
    next(t for t in at.toggle if t.label == "By similarity").set_value(True).run()
    start = load_backend("instance").default_threshold                 # chosen on val, in instance.json
    assert start < 0.4 and not at.exception and f"similarity ≥ {start:.2f}" in heading()
    assert not heading().startswith("0 photos")
    at = app()                                               # no threshold for a classifier
    at.session_state["backend_picker"] = "classifier"
    at.run()
    assert not at.exception and not any(t.label == "By similarity" for t in at.toggle)


def test_render_drawing_and_eraser():
    im = render_drawing(DRAWING, 480, 400)
    assert im is not None and im.size == (480, 400)
    erased = {"objects": DRAWING["objects"] + [{**o, "stroke": "#ffffff", "strokeWidth": 40} for o in DRAWING["objects"]]}
    assert render_drawing(erased, 480, 400) is None
    assert render_drawing({"objects": []}, 10, 10) is None and render_drawing(None, 10, 10) is None


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for n, d in entries.items():
            z.writestr(n, d)
    return buf.getvalue()


def test_uploads_refuse_traversal_bad_zips_and_too_many_files(monkeypatch):
    png = io.BytesIO()
    from PIL import Image
    Image.new("RGB", (8, 8)).save(png, format="PNG")
    good = png.getvalue()
    batch = collect_images([("a.zip", _zip({"cup/x.png": good, "../evil.png": good, "/abs.png": good,
                                             "notes.txt": b"hi"})), ("b.zip", b"PK\x03\x04garbage"),
                            ("empty.png", b"")])
    assert [n for n, _ in batch.images] == ["cup/x.png"]
    text = " ".join(batch.problems)
    assert "leaves the archive" in text and "absolute" in text and "not a readable zip" in text and "empty" in text
    monkeypatch.setattr("sbir_core.uploads.MAX_FILES", 3)
    many = collect_images([("m.zip", _zip({f"{i}.png": good for i in range(5)}))])
    assert len(many.images) == 3 and any("at most 3" in p for p in many.problems)


def test_evaluation_page_reads_a_report(tmp_path, monkeypatch):
    import json
    import ui.reports as support
    report = {"queries": 3, "gallery": 4, "split": "test", "backends": {
        "pretrained": {"mAP@all": 0.04, "P@20": 0.05, "acc@1": 0.0, "acc@10": 0.02, "queries": 3, "query_seconds": 0.3,
                       "per_class_mAP": {"cup": 0.1, "apple": 0.02}},
        "random": {"mAP@all": 0.01, "P@20": 0.01, "acc@1": 0.0, "acc@10": 0.0, "per_class_mAP": {"cup": 0.01}}}}
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(report))
    monkeypatch.setattr(support, "METRICS_FILE", path)
    at = app(None).run()
    at.switch_page("pages/evaluation.py").run()
    assert not at.exception, at.exception
    assert len(at.dataframe) >= 2
    assert sum("slider starts at 0.40" in m.value for m in at.markdown) == 1    # triplet: its PR curve


def test_curve_series_splits_losses_from_quality_for_every_trainer():
    from ui.reports import curve_series, load_curves
    x, losses, quality = curve_series([{"step": 100, "epoch": 1, "d_loss": 0.3, "g_l1": 0.2, "val_mAP": 0.1,
                                        "val_P@20": 0.1, "minutes": 3.0}])
    assert (x, losses, quality) == ("step", ["d_loss", "g_l1"], ["val_mAP", "val_P@20"])
    x, losses, quality = curve_series([{"epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "val_top5": 0.7,
                                        "val_acc@10": 0.1, "seconds": 9.0}])
    assert (x, losses, quality) == ("epoch", ["train_loss"], ["train_acc", "val_top5", "val_acc@10"])
    for name in ("classifier", "triplet", "cgan"):        # the shipped curves each plot both panels
        rows = load_curves(name)
        assert rows, name
        _, losses, quality = curve_series(rows)
        assert losses and quality, name


# -- the canvas, the reading and the cards (ui's Streamlit-free modules, no browser needed) ------------
def test_canvas_size_fits_the_column_and_the_window():
    from ui.drawing import CANVAS_ASPECT, canvas_size
    for column in (309, 343, 376, 409, 640, 1000):
        w, h = canvas_size(column, 900, top=300)
        assert w <= column and 300 + h <= 900
        w, h = canvas_size(column, 2000, top=300)            # a tall window keeps the aspect ratio
        assert abs(h - w * CANVAS_ASPECT) <= 1
    w, h = canvas_size(366, 844, top=293)                  # a phone: the column, full width
    assert w == 366 and h <= 844 - 293
    w, h = canvas_size(566, 720, presenter=True, top=315)   # presenter mode at 1280x720: all of it on screen
    assert 315 + h <= 720 and w <= 566 and h / w >= 0.74
    assert canvas_size(None) == canvas_size(320)            # before the browser reports, a small safe size


def test_drawing_scales_into_the_same_sketch_on_every_screen():
    import numpy as np
    from ui.drawing import SKETCH_WIDTH, scale_drawing, sketch_from_drawing
    ref = sketch_from_drawing(DRAWING)                       # DRAWING is in sketch pixels
    assert ref is not None and ref.size[0] == SKETCH_WIDTH
    for canvas_w in (309, 366, 542):                         # drawn on a canvas that wide ...
        on_canvas = scale_drawing(DRAWING, canvas_w / SKETCH_WIDTH)
        assert on_canvas["objects"][0]["strokeWidth"] == pytest.approx(6 * canvas_w / SKETCH_WIDTH, abs=1e-3)
        back = sketch_from_drawing(scale_drawing(on_canvas, SKETCH_WIDTH / canvas_w))   # ... and back
        diff = np.abs(np.asarray(back, dtype=int) - np.asarray(ref, dtype=int))
        assert diff.mean() < 0.5, canvas_w
    assert scale_drawing(None, 2.0) is None


def _result(labels, scores, extras=None):
    import numpy as np
    from sbir_core import SearchResult
    n = len(labels)
    return SearchResult([f"p{i}" for i in range(n)], np.asarray(scores, dtype=float), list(labels),
                        np.arange(n), extras or {})


def test_reading_of_a_classifier_says_when_the_gallery_has_no_such_photos():
    from ui.reading import read_sketch
    r = _result(["toolbox", "coin"], [0.95, 0.95], {"top_classes": [("bicycle", 0.95), ("car", 0.02), ("cup", 0.01)]})
    reading = read_sketch(r, {"toolbox", "coin", "cup"}, "probability")
    assert reading.kind == "classes" and reading.recognised == "bicycle" and reading.missing
    assert reading.text() == "I see: bicycle 95 % · car 2 % · cup 1 %"
    assert not read_sketch(r, {"bicycle"}, "probability").missing


@needs_gallery
def test_unlabelled_photos_count_as_the_class_a_classifier_files_them_under():
    """Your own photos without class folders: a drawn cup must not read "No cup photos in this gallery"
    when the photo classifier files some of them as cups (it did: every classifier reading said missing)."""
    import csv
    from sbir_core import Gallery
    from ui.reading import read_sketch
    from sbir_core.gallery_kinds import classes_in_gallery, filed_kinds
    from sbir_core.gallery import BUNDLED_DIR
    rows = [r for r in csv.DictReader(open(BUNDLED_DIR / "metadata.csv")) if r["label"] in ("cup", "cat")]
    gallery, _ = Gallery.from_images([(r["id"], (BUNDLED_DIR / r["file"]).read_bytes()) for r in rows[:8]])
    assert not any(gallery.labels)
    classifier = load_backend("classifier")
    here = classes_in_gallery(gallery, classifier)
    feats = gallery.features(classifier)
    sure = feats.max(axis=1) >= classifier.meta["photo_label_threshold"]
    best = {classifier.meta["classes"][i] for i in classifier.photo_labels(feats, gallery.labels)[sure]}
    assert here == best == {k for k in filed_kinds(gallery, classifier) if k}    # only what the labeller is sure of
    assert {"cup", "cat"} & here, here                       # what the photos show, as the classifier files them
    r = _result(["a"], [0.9], {"top_classes": [(sorted({"cup", "cat"} & here)[0], 0.9)]})
    assert not read_sketch(r, here, "probability").missing and read_sketch(r, {"toolbox"}, "probability").missing
    assert classes_in_gallery(gallery, load_backend("triplet")) is None    # cannot know: never says missing
    assert not read_sketch(r, None, "probability").missing


def test_reading_of_an_embedding_backend_names_the_nearest_classes():
    from ui.reading import read_sketch
    r = _result([None, "cup", "cup", "teapot_x", "hat"], [0.9, 0.8, 0.79, 0.5, 0.4])
    reading = read_sketch(r, {"cup", "teapot_x", "hat"}, "similarity")
    assert reading.kind == "nearest" and reading.items == [("cup", 0.8), ("teapot_x", 0.5), ("hat", 0.4)]
    assert reading.text() == "Closest photos: cup (0.80) · teapot x (0.50) · hat (0.40)"
    assert not reading.missing and read_sketch(r, set(), "rank").kind == "none"


def test_card_scores_never_show_one_number_on_every_card():
    from ui.cards import card_scores
    tied = card_scores(_result(["cup"] * 4, [0.998, 0.9981, 0.9979, 0.998]), "similarity")
    assert tied.texts == ["#1", "#2", "#3", "#4"] and "same similarity" in tied.note
    cos = card_scores(_result(["cup", "hat"], [0.91, 0.55]), "similarity")
    assert cos.texts == ["#1 · 0.91", "#2 · 0.55"] and "cosine" in cos.note
    prob = card_scores(_result(["cup", "cup", "hat"], [0.339, 0.339, 0.2]), "probability", [0.9, 0.5, 0.8])
    assert prob.texts == ["#1 · 31%", "#2 · 17%", "#3 · 16%"] and "P(the sketch" in prob.note
    assert card_scores(_result(["a", "b"], [0.3, 0.9]), "rank").texts == ["#1", "#2"]


def test_unlikely_kinds_start_after_a_likely_photo():
    from ui.cards import unlikely_from
    assert unlikely_from(np.array([0.4, 0.3, 0.019, 0.3, 0.01])) == 2       # the first photo of an unlikely kind
    assert unlikely_from(np.array([0.01, 0.005])) is None                     # nothing likely: no line at the top
    assert unlikely_from(np.array([0.5, 0.2])) is None and unlikely_from(None) is None


HOUSE = {"objects": [stroke([(100, 180), (100, 360), (300, 360), (300, 180), (100, 180)]),
                     stroke([(80, 192), (200, 48), (320, 192)]),
                     stroke([(180, 360), (180, 280), (224, 280), (224, 360)])]}


@needs_gallery
def test_a_house_list_says_where_unlikely_kinds_begin():
    """A drawn house: houses and churches, then photos of kinds the reading gives < 2 % (horses), under a line."""
    from sbir_core import Gallery
    from ui.cards import kind_probabilities, unlikely_from
    from ui.drawing import sketch_from_drawing
    backend, gallery = load_backend("classifier"), Gallery.bundled()
    r = backend.search(sketch_from_drawing(HOUSE), gallery, k=12)
    p = kind_probabilities(r, backend)
    start = unlikely_from(p)
    assert start is not None and 0 < start < 12, p
    assert (p[:start] >= 0.02).all() and p[start] < 0.02
    at = app(HOUSE).run()                          # the page: a line there, the cards after it muted
    grid = next(m.value for m in at.markdown if m.value.startswith("<div class='result-grid'"))
    before, after = grid.split("grid-divider", 1)
    assert before.count("result-card") > 0 and "unlikely" not in before
    assert after.count("result-card unlikely") == after.count("result-card") == 12 - before.count("result-card")


@needs_gallery
def test_the_picked_backend_stays_picked_across_pages():
    """Streamlit drops a widget's state on a page that draws it elsewhere: the backend picked on Search
    (in its fragment) came back as the default on Compare and as the first backend on return."""
    at = app().run()
    next(s for s in at.selectbox if s.label == "Backend").set_value("triplet").run()
    for page in ("pages/compare.py", "pages/embedding_map.py", "pages/search.py"):
        at.switch_page(page).run()
        assert not at.exception
        assert next(s.value for s in at.selectbox if s.label == "Backend") == "triplet", page
        assert at.session_state["backend"] == "triplet"


@needs_gallery
def test_embedding_map_opens_on_the_backend_in_use_else_the_best_measured():
    """Every backend that embeds has a committed map; the page opens on the backend in use, and for one
    without a map (random) on the best-measured space, never on the untrained baseline. No developer
    command, no stale-map warning, and the drawing is placed on the map."""
    at = app().run()
    at.switch_page("pages/embedding_map.py").run()
    assert not at.exception
    pick = next(s for s in at.selectbox if s.label == "Map of")
    assert pick.value == "classifier" and len(pick.options) == len(SHIPPED) - 1, pick.options   # all but random
    assert not at.error and not at.warning, [m.value for m in list(at.error) + list(at.warning)]
    assert any(m.value.startswith("Nearest on the map: ") for m in at.success)      # the drawing is placed on it
    assert not any("python -m" in c.value for c in list(at.caption) + list(at.info))
    at = app()
    at.session_state["backend_picker"] = "random"
    at.run()
    at.switch_page("pages/embedding_map.py").run()
    pick = next(s for s in at.selectbox if s.label == "Map of")
    assert not any("andom" in o for o in pick.options) and pick.value not in ("pretrained", "random"), pick.value

def test_card_labels_and_try_chips():
    from ui.cards import card_label, try_classes
    assert card_label("alarm_clock", "An alarm clock.") == "alarm clock"
    assert card_label(None, "An albino peahen.") == "An albino peahen"
    assert card_label(None, "x" * 80).endswith("…") and len(card_label(None, "x" * 80)) <= 38
    assert card_label(None, "") == "photo"
    labels = ["fish", "apple", "fish", None, "cup", "apple", "fish", "zebra"]
    assert try_classes(labels) == ["fish", "apple", "cup", "zebra"]
    assert try_classes(labels, known=["apple", "cup"], n=1) == ["apple"]


@needs_gallery
def test_classifier_cards_are_probability_times_within_class_confidence():
    """A labelled photo's card shows P(kind) alone (the label is known: a labelled house photo must not
    read "0 %" because the labeller doubts it); an unlabelled one is scaled by the labeller's confidence."""
    from dataclasses import replace
    from sbir_core import Gallery, load_backend
    from ui.cards import card_scores, photo_class_confidence
    from ui.drawing import sketch_from_drawing
    backend, gallery = load_backend("classifier"), Gallery.bundled()
    r = backend.search(sketch_from_drawing(DRAWING), gallery, k=12)
    assert (photo_class_confidence(backend, gallery, r.indices) == 1.0).all()
    texts = card_scores(r, "probability", photo_class_confidence(backend, gallery, r.indices)).texts
    assert len(set(t.split("·")[-1] for t in texts)) > 1, texts
    hidden = replace(gallery, labels=[None] * len(gallery), _features={})
    r = backend.search(sketch_from_drawing(DRAWING), hidden, k=12)
    conf = photo_class_confidence(backend, hidden, r.indices)
    assert conf.shape == (12,) and ((conf > 0) & (conf <= 1)).all() and (conf < 1).any(), conf


@needs_gallery
def test_gallery_is_named_for_people_and_try_chips_show_on_a_blank_canvas():
    at = app({"objects": []}).run()
    assert not at.exception
    assert not any("“bundled”" in c.value for c in at.caption)
    assert any("Bundled demo gallery" in c.value for c in at.caption)
    chips = at.button_group if hasattr(at, "button_group") else []
    from sbir_core import Gallery
    classes = {c for c in Gallery.bundled().labels if c}
    assert any(set(getattr(p, "options", [])) & classes for p in chips), "no try-chips naming gallery classes"


def test_map_colours_the_classes_near_the_sketch_and_keeps_its_label_inside():
    from ui.map_view import map_classes_to_colour, map_label_placement
    xs, ys = [0, 1, 2, 10, 11, 12], [0, 0, 0, 0, 0, 0]
    classes = ["cup", "cup", "hat", "fish", "fish", "fish"]
    assert map_classes_to_colour(xs, ys, classes, n=2) == ["fish", "cup"]                 # biggest first
    assert map_classes_to_colour(xs, ys, classes, at=(2.2, 0), n=2) == ["hat", "cup"]      # nearest first
    assert map_classes_to_colour(xs, ys, classes, at=(2.2, 0), n=2, first=["fish"]) == ["fish", "hat"]
    right = map_label_placement(9.5, 0, (0, 10), (-1, 1))
    assert right["align"] == "right" and right["dx"] < 0          # at the right edge the label goes left
    left = map_label_placement(0.5, 0.95, (0, 10), (-1, 1))
    assert left["align"] == "left" and left["dy"] > 0              # near the top it goes below


@needs_gallery
def test_galleries_page_names_galleries_for_people_and_never_says_unlabelled():
    at = app(None).run()
    at.switch_page("pages/galleries.py").run()
    assert not at.exception
    assert at.subheader[0].value.startswith("Bundled demo gallery")
    assert not any("unlabelled" in c.value for c in at.caption)


@needs_gallery
def test_a_class_the_gallery_lacks_gets_an_honest_message_chips_and_a_link(monkeypatch):
    from sbir_core import Gallery
    from ui import session
    from ui.reading import Reading
    from sbir_core.data.classes import VOCABULARY, display
    here = {c for c in Gallery.bundled().labels if c}
    absent = next((c for c in VOCABULARY if c not in here), None)  # derived now: the gallery changes
    if absent is None:
        pytest.skip("the gallery has photos of every class")
    monkeypatch.setattr(session, "read_sketch", lambda *a, **k: Reading(
        "classes", [(absent, 0.95), ("cup", 0.02)], absent, missing=True))
    at = app()
    at.session_state["backend_picker"] = "classifier"
    at.run()
    assert not at.exception
    assert any(w.value == f"No {display(absent)} photos in this gallery — closest matches:" for w in at.warning)
    assert any(m.value.startswith("I see: " + display(absent)) or display(absent) in m.value
               for m in at.markdown if "sketch-reading" in m.value)
    assert any("class='card-name'" in m.value for m in at.markdown)          # the closest matches are still shown
    links = at.get("page_link")
    assert any("galleries" in str(getattr(x, "proto", x)).lower() for x in links), links


def test_reading_summary_marks_the_first_class_once_the_class_is_known():
    from ui.reading import Reading, reading_summary
    r = Reading("classes", [("cup", 0.45), ("bread", 0.09)], "cup")
    assert reading_summary(r) == "cup 45% · bread 9%"
    assert reading_summary(r, "cup").startswith("✅ ") and reading_summary(r, "bread").startswith("❌ ")
    assert reading_summary(Reading("nearest", [("teapot_x", 0.5)]), "teapot_x") == "✅ teapot x"
    assert reading_summary(None) == reading_summary(Reading("none")) == "–"


@needs_gallery
def test_a_try_chip_sets_the_class_to_draw_and_results_get_marked():
    at = app({"objects": []}).run()
    from sbir_core import Gallery
    from sbir_core.data.classes import display
    chips = at.button_group(key="try_pick")
    pick = next(c for c in {x for x in Gallery.bundled().labels if x} if display(c) == chips.options[0])
    chips.set_value(pick).run()
    assert not at.exception and at.session_state["target"] == pick
    at.session_state["canvas_inject"] = DRAWING                      # now draw
    at.run()
    assert not at.exception
    grid = next(m.value for m in at.markdown if m.value.startswith("<div class='result-grid'"))
    n_cards = grid.count("class='card-name'")
    assert n_cards and grid.count("✅") + grid.count("❌") == n_cards


def test_grid_columns_fit_cards_of_about_115_px():
    from ui.cards import grid_columns
    assert grid_columns(312) == 2 and grid_columns(440) == 3 and grid_columns(480) == 4 and grid_columns(900) == 4
    assert grid_columns(900, most=8) == 7 and grid_columns(100) == 2


@needs_gallery
def test_galleries_page_counts_kinds_finds_one_and_files_unlabelled_photos():
    """The Galleries page says how many kinds a gallery has photos of, finds a kind ("hat": none here),
    and for your own photos without class folders says what the photo labeller filed."""
    import csv
    from sbir_core import Gallery
    from ui.catalogue import Thumbnails
    from sbir_core.gallery import BUNDLED_DIR
    at = app(None).run()
    at.switch_page("pages/galleries.py").run()
    assert not at.exception
    bundled = Gallery.bundled()
    kinds = len({label for label in bundled.labels if label})
    assert at.subheader[0].value.endswith(f"{len(bundled)} photos · photos of {kinds} kinds"), at.subheader[0].value
    at.text_input(key="find_kind").input("hat").run()
    assert any(m.value == "No photos of hat here." for m in at.markdown), [m.value for m in at.markdown]
    at.text_input(key="find_kind").input("ca").run()
    assert any("camel (4)" in m.value and "cat (" in m.value for m in at.markdown)

    rows = [r for r in csv.DictReader(open(BUNDLED_DIR / "metadata.csv")) if r["label"] in ("cat", "bus", "broccoli")]
    mine, _ = Gallery.from_images([(r["id"], (BUNDLED_DIR / r["file"]).read_bytes()) for r in rows])
    at = app(None)
    at.session_state["user_gallery"], at.session_state["user_thumbs"] = mine, Thumbnails(mine)
    at.session_state["gallery_key_next"] = "user"
    at.run()
    at.switch_page("pages/galleries.py").run()
    assert not at.exception
    caption = " ".join(c.value for c in at.caption)
    assert f"0 photos carry a kind; " in caption and "filed by the photo labeller" in caption, caption
    filed = at.subheader[0].value
    assert "photos of" in filed and "no kinds known" not in filed, filed
