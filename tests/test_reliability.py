"""Issue 15: nothing a crash, a changed folder, a phone photo or a hostile upload does can corrupt a
gallery or show wrong results. Small synthetic galleries and a fake backend keep these fast; the
kill-during-write case runs in a subprocess."""
from __future__ import annotations

import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sbir_core import gallery as gallery_mod
from sbir_core.backends import load_backend
from sbir_core.backends.base import check_k
from sbir_core.backends.onnx_model import ModelFileError, meta_problem, read_meta
from sbir_core.config import MODELS_DIR, REPO_ROOT
from sbir_core.data.preprocess import (BlankSketchError, ImageInputError, Preprocess, load_image, prepare_sketch,
                                       sketch_input)
from sbir_core.gallery import Gallery
from sbir_core.uploads import collect_images, unsafe_member_name, zip_directory_size

from .reliability_fakes import MeanColour



@pytest.fixture(autouse=True)
def cache_root(tmp_path, monkeypatch) -> Path:
    """Folder galleries cache their features here, not in the repo's .cache."""
    root = tmp_path / "cache"
    monkeypatch.setattr(gallery_mod, "CACHE_ROOT", root)
    return root


def colour_folder(root: Path, colours: dict[str, list[tuple[int, int, int]]]) -> Path:
    """`<class>/<n>.png` photos of plain colours."""
    for label, cs in colours.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for n, c in enumerate(cs):
            Image.new("RGB", (24, 24), c).save(root / label / f"{n}.png")
    return root


def png(im: Image.Image, **kw) -> bytes:
    b = io.BytesIO()
    im.save(b, format="PNG", **kw)
    return b.getvalue()


REDS = [(200 + i * 10, 0, 0) for i in range(5)]
BLUES = [(0, 0, 200 + i * 10) for i in range(5)]


# -- 1. the feature cache: atomic, checked, rebuilt ------------------------------------------------
def test_damaged_cache_file_is_rebuilt_not_trusted(tmp_path):
    """A feature file cut short (what an interrupted in-place write left) is rebuilt, never raised."""
    folder = colour_folder(tmp_path / "photos", {"cat": REDS})
    b = MeanColour()
    good = Gallery.from_folder(folder).features(b)
    path = Gallery.from_folder(folder).cache_dir / f"{b.feature_key}.npy"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    g = Gallery.from_folder(folder)
    assert np.array_equal(g.features(b), good)
    assert path.read_bytes() == data                                   # repaired on disk too


def test_cache_swapped_for_another_file_is_rebuilt(tmp_path):
    """A well-formed .npy that is not the one its record describes (hash differs) is not used."""
    folder = colour_folder(tmp_path / "photos", {"cat": REDS})
    b = MeanColour()
    good = Gallery.from_folder(folder).features(b)
    path = Gallery.from_folder(folder).cache_dir / f"{b.feature_key}.npy"
    np.save(path, np.zeros_like(good))
    assert np.array_equal(Gallery.from_folder(folder).features(b), good)


KILL_SCRIPT = '''
import os, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import sbir_core.feature_cache as C
import sbir_core.gallery as G
from tests.reliability_fakes import MeanColour
G.CACHE_ROOT = Path(sys.argv[3])
def slow_fsync(fd):                      # the bytes are written but not yet renamed into place
    print("writing", flush=True)
    time.sleep(60)
C.os.fsync = slow_fsync
G.Gallery.from_folder(sys.argv[2]).features(MeanColour())
'''


def test_kill_during_cache_write_leaves_no_half_file(tmp_path):
    """SIGKILL while the feature file is being written: the next run neither raises nor reads a
    partial file; it indexes again and gets the right features."""
    folder = colour_folder(tmp_path / "photos", {"cat": REDS, "sky": BLUES})
    (tmp_path / "kill.py").write_text(KILL_SCRIPT)
    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(tmp_path / "kill.py"), str(REPO_ROOT), str(folder), str(cache)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "writing", proc.stderr.read()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    gallery_mod.CACHE_ROOT = cache
    g = Gallery.from_folder(folder)
    key = MeanColour().feature_key
    assert not (g.cache_dir / f"{key}.npy").exists()                # only a temp file was being written
    b = MeanColour()
    feats = g.features(b)
    assert b.batches > 0 and feats.shape == (10, 3)
    assert np.allclose(feats[0], np.asarray(REDS[0]) / 127.5 - 1, atol=0.02)   # the right photo, the right row
    assert np.array_equal(Gallery.from_folder(folder).features(MeanColour()), feats)
    # the killed writer's temp file is removed by a later write once it is old enough
    (stray,) = g.cache_dir.glob(".*.tmp")
    os.utime(stray, (1, 1))
    (g.cache_dir / f"{key}.json").unlink()
    Gallery.from_folder(folder).features(MeanColour())
    assert not stray.exists()


# -- 2. stale folder cache -------------------------------------------------------------------------
def test_replacing_photos_with_same_count_reindexes(tmp_path):
    """Six cat photos replaced by six airplane photos (same names, same count): new features."""
    folder = tmp_path / "photos"
    colour_folder(folder, {"x": REDS + REDS[:1]})
    b = MeanColour()
    before = Gallery.from_folder(folder).features(b)
    time.sleep(0.01)
    shutil.rmtree(folder / "x")
    colour_folder(folder, {"x": BLUES + BLUES[:1]})
    after = Gallery.from_folder(folder).features(MeanColour())
    assert not np.allclose(before, after)
    assert np.allclose(after[:, 2], np.asarray([c[2] for c in BLUES + BLUES[:1]]) / 127.5 - 1, atol=0.02)


def test_saved_gallery_fingerprint_is_by_content(tmp_path):
    """Committed galleries must survive a fresh clone (new mtimes), but not changed photos."""
    folder = colour_folder(tmp_path / "g", {"cat": REDS})
    g = Gallery.from_folder(folder)
    g.saved = True
    fp = g.fingerprint
    for p in (folder / "cat").iterdir():
        os.utime(p, (1, 1))
    g2 = Gallery.from_folder(folder)
    g2.saved = True
    assert g2.fingerprint == fp
    Image.new("RGB", (24, 24), (1, 2, 3)).save(folder / "cat" / "0.png")
    g3 = Gallery.from_folder(folder)
    g3.saved = True
    assert g3.fingerprint != fp


# -- 3. two uploads of the same size ---------------------------------------------------------------
def test_two_uploads_of_the_same_size_have_different_keys():
    a = [(f"{i}.png", png(Image.new("RGB", (20, 20), c))) for i, c in enumerate(REDS)]
    b = [(f"{i}.png", png(Image.new("RGB", (20, 20), c))) for i, c in enumerate(BLUES)]
    ga, _ = Gallery.from_images(a)
    gb, _ = Gallery.from_images(b)
    assert ga.name == gb.name and len(ga) == len(gb)
    assert ga.content_key != gb.content_key
    assert Gallery.from_images(a)[0].content_key == ga.content_key


def test_search_memo_follows_the_photos_not_their_count(monkeypatch):
    """The Search page's remembered results: a second upload of the same size is searched anew."""
    pytest.importorskip("streamlit")
    from ui import session
    state: dict = {"sketch": {"hash": "s1", "png": png(stroke_image())}}
    monkeypatch.setattr(session.st, "session_state", state)
    backend = MeanColour()
    monkeypatch.setattr(session, "backend_or_message", lambda name: (backend, None))
    monkeypatch.setattr(session, "ensure_indexed", lambda b, g: None)
    ga, _ = Gallery.from_images([(f"{i}.png", png(Image.new("RGB", (20, 20), c))) for i, c in enumerate(REDS)])
    gb, _ = Gallery.from_images([(f"b{i}.png", png(Image.new("RGB", (20, 20), c))) for i, c in enumerate(BLUES)])
    ra = session.search("meancolour", ga, 3).result
    rb = session.search("meancolour", gb, 3).result
    assert all(i.split("-", 1)[1].startswith("b") for i in rb.ids) and ra.ids != rb.ids


# -- 4. EXIF orientation ---------------------------------------------------------------------------
def stroke_image(w: int = 120, h: int = 80) -> Image.Image:
    """An asymmetric drawing (an L), so any rotation changes it."""
    a = np.full((h, w), 255, np.uint8)
    a[10:70, 20:26] = 0
    a[64:70, 20:100] = 0
    return Image.fromarray(a)


def rotated_with_exif(im: Image.Image) -> bytes:
    """As a phone stores it: pixels rotated, EXIF Orientation=6 (rotate 90° clockwise to view)."""
    stored = im.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    return png(stored, exif=exif)


def test_exif_rotated_sketch_reads_upright():
    upright = stroke_image()
    data = rotated_with_exif(upright)
    assert Image.open(io.BytesIO(data)).size == (80, 120)              # stored sideways
    assert load_image(data).size == upright.size
    pp = Preprocess(size=48)
    assert np.array_equal(sketch_input(data, pp), sketch_input(upright, pp))


def test_exif_rotated_photo_and_sketch_give_the_same_results(tmp_path):
    """Every path an image enters by: a sketch's search and an uploaded photo's features."""
    if not (MODELS_DIR / "classifier_small.json").is_file():
        pytest.skip("no classifier_small model files")
    backend = load_backend("classifier_small")
    gallery = Gallery.bundled()
    upright = stroke_image()
    a = backend.search(png(upright), gallery, k=10)
    b = backend.search(rotated_with_exif(upright), gallery, k=10)
    assert a.ids == b.ids and np.allclose(a.scores, b.scores)
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 50, 3), dtype=np.uint8))
    g1, _ = Gallery.from_images([("p.png", png(photo))])
    g2, _ = Gallery.from_images([("p.png", rotated_with_exif(photo))])
    assert np.allclose(g1.features(backend), g2.features(backend), atol=1e-6)


# -- 5. one unreadable image -----------------------------------------------------------------------
def test_one_unreadable_photo_is_skipped_named_and_the_rest_saved(tmp_path):
    folder = colour_folder(tmp_path / "photos", {"cat": REDS, "sky": BLUES})
    (folder / "cat" / "broken.png").write_bytes(png(Image.new("RGB", (24, 24)))[:40])
    g = Gallery.from_folder(folder)
    assert len(g) == 11
    b = MeanColour()
    feats = g.features(b)
    assert feats.shape == (10, 3) and len(g) == 10 and "cat/broken" not in g.ids
    assert g.skipped_summary().startswith("Skipped 1 unreadable photo") and "cat/broken.png" in g.skipped_summary()
    r = b.search(np.asarray(stroke_image()), g, k=20)
    assert sorted(r.ids) == sorted(g.ids) and len(r.ids) == 10                # every readable photo, nothing else
    # a new process (new Gallery) reads the cache: the same photos, the same reason, no re-indexing
    b2 = MeanColour()
    g2 = Gallery.from_folder(folder)
    assert np.array_equal(g2.features(b2), feats) and b2.batches == 0
    assert g2.ids == g.ids and g2.skipped == g.skipped


def test_gallery_of_only_unreadable_photos_says_so(tmp_path):
    (tmp_path / "p").mkdir()
    for n in range(2):
        (tmp_path / "p" / f"{n}.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ImageInputError, match="none of the 2 photos"):
        Gallery.from_folder(tmp_path / "p").features(MeanColour())


# -- 6. resource exhaustion ------------------------------------------------------------------------
def zip_of(members: dict[str, bytes]) -> bytes:
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return b.getvalue()


def test_huge_central_directory_is_refused_before_zipfile_parses_it(monkeypatch):
    many = zip_of({f"{i}.png": b"" for i in range(6000)})
    assert zip_directory_size(many) == (6000, sum(46 + len(f"{i}.png") for i in range(6000)))   # 46-byte records + names
    # a small archive whose end record announces a 200 MB directory (what a 3.8 M-entry zip has)
    small = bytearray(zip_of({"a.png": png(Image.new("RGB", (4, 4)))}))
    eocd = bytes(small).rfind(b"PK\x05\x06")
    small[eocd + 12:eocd + 16] = struct.pack("<I", 200 * 2**20)

    def no_parsing(*a, **k):
        raise AssertionError("zipfile parsed a refused archive")
    monkeypatch.setattr(zipfile, "ZipFile", no_parsing)
    for data in (many, bytes(small)):
        batch = collect_images([("big.zip", data)])
        assert not batch.images and "refused, it holds" in batch.problems[0]


def test_zip_with_no_end_record_is_a_clear_message():
    batch = collect_images([("x.zip", b"PK\x03\x04" + b"\0" * 100)])
    assert "not a readable zip archive" in batch.problems[0]


def test_zip64_end_record_is_read():
    """ZIP64: the entry count comes from the ZIP64 record when the classic one says 0xFFFF."""
    rec = b"PK\x06\x06" + struct.pack("<QHHIIQQQQ", 44, 45, 45, 0, 0, 3_800_000, 3_800_000, 200 * 2**20, 0)
    loc = b"PK\x06\x07" + struct.pack("<IQI", 0, 0, 1)
    eocd = b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    assert zip_directory_size(rec + loc + eocd) == (3_800_000, 200 * 2**20)


def test_uploaded_photos_are_not_decoded_twice(monkeypatch):
    """An upload is checked by its header only; the one full decode happens when it is indexed."""
    data = png(Image.new("RGB", (64, 64), (10, 20, 30)))

    def no_decode(*a, **k):
        raise AssertionError("decoded on upload")
    monkeypatch.setattr(gallery_mod, "load_image", no_decode)
    g, problems = Gallery.from_images([("a.png", data), ("b.txt", b"hello"), ("huge.png", _huge_png())])
    assert len(g) == 1 and len(problems) == 2 and "too large" in problems[1]


def _huge_png(w: int = 20_000, h: int = 20_000) -> bytes:
    import zlib

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")


def test_truncated_upload_is_skipped_at_indexing_and_named():
    good = png(Image.new("RGB", (30, 30), (200, 0, 0)))
    bad = png(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    g, problems = Gallery.from_images([("good.png", good), ("cut.png", bad[: len(bad) - 300])])
    feats = g.features(MeanColour())
    assert feats.shape == (1, 3) and len(g) == 1
    assert any("cut" in s for s in g.skipped + problems)


def test_herd_of_first_searches_indexes_once(tmp_path):
    """20 sessions search a new gallery at once: one indexes, the others wait (seeing its progress)
    and get the same features."""
    folder = colour_folder(tmp_path / "photos", {"cat": REDS * 4, "sky": BLUES * 4})
    backend = MeanColour()
    backend.delay = 0.05                                               # 10 batches: ~0.5 s of indexing
    g = Gallery.from_folder(folder)
    results, seen = [None] * 20, [0] * 20
    start = threading.Barrier(20)

    def session(i: int) -> None:
        start.wait()

        def progress(done: int, total: int) -> None:
            seen[i] += 1
        results[i] = g.features(backend, progress)

    threads = [threading.Thread(target=session, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert backend.batches == 10                                        # 40 photos / 4 per batch, once
    assert all(r is results[0] for r in results)
    assert sum(1 for s in seen if s > 0) >= 10                          # waiters saw progress too
    # two Gallery objects of one folder share the lock and the cache file
    b2 = MeanColour()
    assert np.array_equal(Gallery.from_folder(folder).features(b2), results[0]) and b2.batches == 0


# -- 7. model metadata -----------------------------------------------------------------------------
@pytest.mark.parametrize("meta, field", [
    ({"title": "Triplet"}, "'preprocess' is missing"),
    ([1, 2], "expected a JSON object, got a list"),
    (None, "got null"),
    ("triplet", "got text"),
    ({"preprocess": {"size": "big", "mean": [0.5] * 3, "std": [0.5] * 3}, "sketch_model": "a.onnx",
      "photo_model": "a.onnx"}, "'size'"),
    ({"preprocess": {"size": 64, "mean": [0.5] * 2, "std": [0.5] * 3}, "sketch_model": "a.onnx",
      "photo_model": "a.onnx"}, "'mean'"),
    ({"preprocess": {"size": 64, "mean": [0.5] * 3, "std": [0, 1, 1]}, "sketch_model": "a.onnx",
      "photo_model": "a.onnx"}, "'std'"),
    ({"preprocess": {"size": 64, "mean": [0.5] * 3, "std": [0.5] * 3}, "sketch_model": "../../etc/x",
      "photo_model": "a.onnx"}, "'sketch_model'"),
    ({"preprocess": {"size": 64, "mean": [0.5] * 3, "std": [0.5] * 3}, "sketch_model": "a.onnx",
      "photo_model": "a.onnx", "title": ["x"]}, "'title'"),
    ({"preprocess": {"size": 64, "mean": [0.5] * 3, "std": [0.5] * 3}, "sketch_model": "a.onnx",
      "photo_model": "a.onnx", "first_row_hedge": "half"}, "'first_row_hedge'"),
])
def test_bad_metadata_is_named_by_file_and_field(tmp_path, meta, field):
    (tmp_path / "triplet.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="triplet.json") as e:
        read_meta("triplet", tmp_path)
    assert field in str(e.value) and "export.all" in str(e.value)
    with pytest.raises(ModelFileError, match=field.replace("(", r"\(")):
        load_backend("triplet").__class__(models_dir=tmp_path)


def test_shipped_metadata_passes_the_schema():
    for p in MODELS_DIR.glob("*.json"):
        d = json.loads(p.read_text())
        if isinstance(d, dict) and "sketch_model" in d:
            assert meta_problem(d, p.stem) is None, p.name


def test_classifier_needs_classes_matching_its_output(tmp_path):
    if not (MODELS_DIR / "classifier_small.json").is_file():
        pytest.skip("no classifier_small model files")
    meta = read_meta("classifier_small")
    for f in {meta["sketch_model"], *meta["photo_model"]}:
        (tmp_path / f).symlink_to(MODELS_DIR / f)
    (tmp_path / "classifier_small.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "classes"}))
    with pytest.raises(ModelFileError, match="'classes' is missing"):
        read_meta("classifier_small", tmp_path)
    (tmp_path / "classifier_small.json").write_text(json.dumps({**meta, "classes": meta["classes"][:3]}))
    cls = type(load_backend("classifier_small"))
    with pytest.raises(ModelFileError, match="lists 3 classes but the model scores"):
        cls(models_dir=tmp_path)


@pytest.fixture
def models_copy(tmp_path, monkeypatch) -> Path:
    """A models folder of links to the shipped files, for breaking one backend's files."""
    from sbir_core import backends
    from sbir_core.backends import onnx_model
    from ui import catalogue, reports
    out = tmp_path / "models"
    out.mkdir()
    for p in MODELS_DIR.iterdir():
        if p.is_file():
            (out / p.name).write_bytes(p.read_bytes()) if p.suffix == ".json" else (out / p.name).symlink_to(p)
    for mod in (backends, onnx_model, catalogue, reports):
        monkeypatch.setattr(mod, "MODELS_DIR", out)
    return out


def test_one_bad_metadata_file_leaves_the_other_backends_alone(models_copy):
    from ui.catalogue import backend_infos
    if not (models_copy / "triplet.json").is_file():
        pytest.skip("no triplet model files")
    (models_copy / "triplet.json").write_text("[1, 2, 3]")
    infos = {i.name: i for i in backend_infos()}
    assert "triplet.json" in infos["triplet"].error and "a list" in infos["triplet"].error
    assert all(i.error is None for n, i in infos.items() if n != "triplet")


def test_backend_with_missing_model_file_is_marked_unavailable(models_copy):
    from ui.catalogue import backend_infos
    if not (models_copy / "triplet.json").is_file():
        pytest.skip("no triplet model files")
    (models_copy / "triplet_sketch_head.onnx").unlink()
    infos = {i.name: i for i in backend_infos()}
    assert "triplet_sketch_head.onnx" in infos["triplet"].error and "missing" in infos["triplet"].error
    assert infos["classifier"].error is None                   # the others stay available


def test_damaged_embedding_map_is_a_clear_message(tmp_path):
    from sbir_core.tsne_map import EmbeddingMap
    (tmp_path / "tsne_triplet.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(FileNotFoundError, match="damaged.*rebuild it"):
        EmbeddingMap.load("triplet", tmp_path)


# -- 8. Python API edges ---------------------------------------------------------------------------
@pytest.mark.parametrize("array, message", [
    (np.zeros((3, 40, 40), np.uint8), "channels come first"),
    (np.zeros((40, 40, 5), np.uint8), "shape"),
    (np.array([["a"] * 20] * 20), "numeric"),
    (np.zeros((0, 10), np.uint8), "shape"),
    (np.zeros((4, 4, 4, 4), np.uint8), "shape"),
    (np.full((20, 20), np.nan), "NaN or infinite"),
    (np.full((20, 20), -3.0), r"\[0, 1\] or \[0, 255\]"),
    (np.broadcast_to(np.float64(0.5), (10_000, 10_000)), "too large"),       # 800 MB if it were real
])
def test_bad_arrays_get_a_message_naming_the_problem(array, message):
    with pytest.raises(ImageInputError, match=message):
        load_image(array)


def test_one_nan_is_refused_not_a_rescale():
    a = np.ones((30, 30))
    a[3, 3] = np.nan
    with pytest.raises(ImageInputError, match="1 NaN"):
        sketch_input(a, Preprocess(size=32))


def test_value_ranges_are_read_as_meant():
    a = np.ones((40, 40))
    a[10:30, 19:21] = 0
    pp = Preprocess(size=32)
    ref = sketch_input((a * 255).astype(np.uint8), pp)
    assert np.array_equal(sketch_input(a, pp), ref)                         # floats in [0, 1]
    assert np.array_equal(sketch_input(a * 255.0, pp), ref)                 # floats in [0, 255]
    assert np.array_equal(sketch_input((a * 255).astype(np.int64), pp), ref)
    assert np.array_equal(sketch_input(a.astype(bool), pp), ref)


def test_big_pil_image_is_refused():
    with pytest.raises(ImageInputError, match="too large"):
        load_image(Image.new("1", (8000, 6000)))


def test_grey_alpha_array_and_white_ink_on_transparent_are_drawings():
    la = np.zeros((60, 60, 2), np.uint8)
    la[..., 0], la[..., 1] = 255, 255
    la[10:50, 28:32, 0] = 0                                                  # dark stroke, opaque ground
    assert (np.asarray(prepare_sketch(la, 32)) < 128).any()
    rgba = np.zeros((60, 60, 4), np.uint8)                                   # transparent ground ...
    rgba[10:50, 28:32] = (255, 255, 255, 255)                                # ... white ink
    g = np.asarray(prepare_sketch(rgba, 32))
    assert (g < 128).any() and (g == 255).mean() > 0.5
    with pytest.raises(BlankSketchError):
        prepare_sketch(np.zeros((60, 60, 4), np.uint8))                      # nothing at all stays blank


@pytest.mark.parametrize("k, error", [(None, TypeError), ("5", TypeError), (True, TypeError), (0, ValueError),
                                      (2.5, ValueError), (-1, ValueError), (float("nan"), ValueError)])
def test_bad_k_is_named(k, error):
    with pytest.raises(error, match="k must be"):
        check_k(k)


def test_whole_number_k_of_any_type_works():
    g, _ = Gallery.from_images([(f"{i}.png", png(Image.new("RGB", (20, 20), c))) for i, c in enumerate(REDS)])
    b = MeanColour()
    sketch = np.asarray(stroke_image())
    for k in (3, 3.0, np.int64(3)):
        assert len(b.search(sketch, g, k=k).ids) == 3
    with pytest.raises(TypeError, match="gallery must be"):
        b.search(sketch, [1, 2, 3], k=3)
    with pytest.raises(ImageInputError, match="expected an image"):
        b.search(12345, g, k=3)


# -- 9. hardening ----------------------------------------------------------------------------------
def test_formats_outside_the_documented_ones_are_refused():
    b = io.BytesIO()
    Image.new("RGB", (16, 16), (255, 0, 0)).save(b, format="TGA")
    with pytest.raises(ImageInputError, match="supported format"):
        load_image(b.getvalue())
    for fmt in ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF"):
        b = io.BytesIO()
        Image.new("RGB", (16, 16), (255, 0, 0)).save(b, format=fmt)
        assert load_image(b.getvalue()).size == (16, 16)


def test_harmless_dot_path_is_accepted_and_traversal_still_refused():
    assert unsafe_member_name("./x/../fine.png") is None
    assert unsafe_member_name("x/../../evil.png") and unsafe_member_name("../evil.png")
    good = png(Image.new("RGB", (8, 8)))
    batch = collect_images([("a.zip", zip_of({"./x/../fine.png": good}))])
    assert [n for n, _ in batch.images] == ["fine.png"]


def test_markup_in_names_never_reaches_ids_or_messages():
    good = png(Image.new("RGB", (8, 8)))
    evil = '<img src=x onerror="alert(1)">[link](http://x).png'
    batch = collect_images([("a.zip", zip_of({evil: good, "<b>bad</b>.txt": b"x"}))])
    g, _ = Gallery.from_images(batch.images)
    for text in g.ids + g.captions + batch.problems:
        assert "<" not in text and ">" not in text and '"' not in text and "](" not in text


def test_onnxruntime_writes_nothing_under_home(tmp_path):
    if not (MODELS_DIR / "classifier_small.json").is_file():
        pytest.skip("no classifier_small model files")
    code = ("from sbir_core import load_backend, Gallery\n"
            "import numpy as np\n"
            "b = load_backend('classifier_small')\n"
            "a = np.full((64, 64), 255, np.uint8); a[10:50, 30:34] = 0\n"
            "b.search(a, Gallery.bundled(), k=3)\n")
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    env.update(HOME=str(tmp_path), XDG_CACHE_HOME=str(tmp_path / ".cache"), PYTHONPATH=str(REPO_ROOT),
               OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=tmp_path, timeout=120)
    assert not list(tmp_path.rglob("*onnxruntime*")), list(tmp_path.rglob("*"))


def test_unexpected_search_error_gives_no_rebuild_advice():
    from ui.reading import safe_search

    class Broken(MeanColour):
        def score(self, q, f, labels):
            raise RuntimeError("boom")
    g, _ = Gallery.from_images([("a.png", png(Image.new("RGB", (20, 20), (1, 2, 3))))])
    out = safe_search(Broken(), np.asarray(stroke_image()), g, 3)
    assert out.result is None and "boom" in out.error and "export.all" not in out.error


def test_bad_threshold_is_named():
    if not (MODELS_DIR / "pretrained.json").is_file():
        pytest.skip("no pretrained model files")
    backend = load_backend("pretrained")
    g, _ = Gallery.from_images([("a.png", png(Image.new("RGB", (20, 20), (1, 2, 3))))])
    for bad in (None, "0.5", float("nan")):
        with pytest.raises(ValueError, match="threshold must be"):
            backend.search_within(np.asarray(stroke_image()), g, bad)


# -- the load test ---------------------------------------------------------------------------------
def test_load_test_runs_against_the_app_on_loopback():
    """A small version of the benchmark's load test: the real app server on 127.0.0.1, sessions at
    once; every answer arrives, without errors, and equals the one-session answer."""
    pytest.importorskip("websockets")
    from sbir_core.bench.load import server_load
    r = server_load(sessions=3, searches=2, baseline_searches=2, k_values=(8,), time_limit_s=240)
    many = r["concurrent"]
    assert r["examples"] > 0 and many["searches"] == many["expected_searches"] == 6
    assert many["errors"] == 0 and many["differs_from_reference"] == 0 and many["short"] == 0
    assert r["one_session"]["errors"] == 0 and r["one_session"]["latency_ms"]["p50"] > 0


def test_indexing_survives_a_caller_that_gives_up(tmp_path):
    """A page rerun raises out of the progress callback: that caller stops waiting, the indexing
    does not, and the next search finds it done (no second pass)."""
    folder = colour_folder(tmp_path / "photos", {"cat": REDS * 4})
    backend = MeanColour()
    backend.delay = 0.05
    g = Gallery.from_folder(folder)

    class Rerun(Exception):
        pass

    def impatient(done: int, total: int) -> None:
        raise Rerun()
    with pytest.raises(Rerun):
        g.features(backend, impatient)
    feats = g.features(backend)
    assert feats.shape == (20, 3) and backend.batches == 5


def test_thumbnails_follow_the_photos_when_one_is_left_out(tmp_path):
    from ui.catalogue import Thumbnails
    folder = colour_folder(tmp_path / "photos", {"cat": [(250, 0, 0)], "dog": [(0, 0, 250)]})
    (folder / "cat" / "9.png").write_bytes(b"broken")        # listed first: cat/0, cat/9, dog/0
    g = Gallery.from_folder(folder)
    thumbs = Thumbnails(g, size=16)
    before = thumbs(1)                                          # the broken one: a grey placeholder
    g.features(MeanColour())
    after = np.asarray(Image.open(io.BytesIO(thumbs(1))).convert("RGB"))
    assert thumbs(1) != before and after[8, 8, 2] > 200         # now position 1 is the blue dog


def test_upload_declaring_far_more_pixels_than_its_bytes_hold_is_refused():
    """20 legal 40 MP PNGs of 130 KB each cost ~8 s CPU to decode: refused from the header."""
    b = io.BytesIO()
    Image.new("L", (6000, 6000), 255).save(b, format="PNG")
    g, problems = Gallery.from_images([("white.png", b.getvalue()), ("ok.png", png(Image.new("RGB", (64, 64))))])
    assert len(g) == 1 and "white.png: refused" in problems[0] and "decompression bomb" in problems[0]


def test_default_backend_loads_even_with_a_damaged_report_and_a_broken_backend(models_copy, monkeypatch):
    """The first page a visitor sees: not a backend whose files are missing, and not whatever comes
    first when the evaluation report is damaged (the preferred backend that loads)."""
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest
    from ui import reports
    if not {"triplet.json", "classifier.json"} <= {p.name for p in models_copy.iterdir()}:
        pytest.skip("needs the triplet and classifier models")
    (models_copy / "metrics_sketchy.json").write_text('{"backends": [damaged')
    monkeypatch.setattr(reports, "METRICS_FILE", models_copy / "metrics_sketchy.json")
    (models_copy / "bench.json").write_text('{"quality": {"results": 3}}')
    monkeypatch.setattr(reports, "BENCH_FILE", models_copy / "bench.json")
    assert reports.load_report() is None and reports.first_row_hits() == {}
    (models_copy / "triplet_sketch_head.onnx").unlink()
    at = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=120).run()
    assert not at.exception
    assert at.session_state["backend"] == "classifier"


def test_default_backend_is_the_one_whose_first_row_serves_doodles_best(tmp_path, monkeypatch):
    """The benchmark's doodles -> gallery hit@4 picks the first page's backend, before Sketchy mAP@all."""
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest
    from ui import reports
    if not {"triplet.json", "classifier.json"} <= {p.name for p in MODELS_DIR.iterdir()}:
        pytest.skip("needs the triplet and classifier models")
    sets = lambda h: {"sets": {"quickdraw": {"hit@4": h}}}                          # noqa: E731
    (tmp_path / "bench.json").write_text(json.dumps({"quality": {"results": {"triplet": sets(0.9),
                                                                             "classifier": sets(0.5)}}}))
    (tmp_path / "metrics.json").write_text(json.dumps({"backends": {"classifier": {"mAP@all": 0.9},
                                                                    "triplet": {"mAP@all": 0.1}}}))
    monkeypatch.setattr(reports, "BENCH_FILE", tmp_path / "bench.json")
    monkeypatch.setattr(reports, "METRICS_FILE", tmp_path / "metrics.json")
    assert reports.first_row_hits() == {"triplet": 0.9, "classifier": 0.5}
    at = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=120).run()
    assert not at.exception and at.session_state["backend"] == "triplet"


def test_search_page_names_an_unreadable_photo_instead_of_an_exception_box(tmp_path, monkeypatch):
    """A folder gallery with one broken photo on the Search page: results from the rest, and one
    warning line naming the file (issue 15 saw an exception box and nothing saved)."""
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest
    if not (MODELS_DIR / "triplet.json").is_file():
        pytest.skip("no triplet model files")
    folder = tmp_path / "mine"
    for label, colour in (("cat", (200, 120, 40)), ("cup", (40, 90, 200))):
        (folder / label).mkdir(parents=True)
        for n in range(3):
            Image.new("RGB", (48, 48), tuple(c + 10 * n for c in colour)).save(folder / label / f"{n}.png")
    (folder / "cup" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    monkeypatch.setenv("SBIR_GALLERY_DIR", str(folder))
    at = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=120)
    at.session_state["canvas_inject"] = {"objects": [{"type": "path", "stroke": "#000000", "strokeWidth": 6,
                                                      "path": [["M", 100, 100], ["L", 300, 300], ["L", 100, 300]]}]}
    at.session_state["gallery_key_picker"] = "folder"
    at.session_state["backend_picker"] = "triplet"
    try:
        at.run()
        assert not at.exception
        assert any("Skipped 1 unreadable photo" in w.value and "cup/broken.jpg" in w.value for w in at.warning)
        assert not at.error
    finally:
        from ui import session
        session.get_shared_gallery.clear()


def test_metadata_size_that_does_not_fit_the_model_is_named(models_copy):
    if not (models_copy / "classifier_small.json").is_file():
        pytest.skip("no classifier_small model files")
    meta = json.loads((models_copy / "classifier_small.json").read_text())
    meta["preprocess"]["size"] = 100
    (models_copy / "classifier_small.json").write_text(json.dumps(meta))
    cls = type(load_backend("classifier_small"))
    with pytest.raises(ModelFileError, match=r"classifier_small.json: field 'preprocess' has size 100 but .* 64×64"):
        cls(models_dir=models_copy)


def test_saved_gallery_with_bad_metadata_is_named(tmp_path):
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "metadata.csv").write_text("name,label\nx,cat\n")
    with pytest.raises(ValueError, match="missing column.*id, file"):
        Gallery.load(tmp_path / "g")
    (tmp_path / "g" / "metadata.csv").write_text("id,file,label\nx,../../etc/passwd,cat\n")
    with pytest.raises(ValueError, match="line 2: file '../../etc/passwd' is not inside the gallery folder"):
        Gallery.load(tmp_path / "g")


def test_zip_with_a_corrupt_member_keeps_the_others():
    """One member fails its CRC, one is a damaged image: both named, the good photo indexed."""
    good = png(Image.new("RGB", (32, 32), (200, 30, 30)))
    noisy = png(Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 40, 3), dtype=np.uint8)))
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("cat/good.png", good)
        z.writestr("cat/crc.png", noisy)
        z.writestr("cat/cut.png", noisy[: len(noisy) // 2])
    data = bytearray(b.getvalue())
    at = data.find(noisy[200:232])                      # flip bytes inside the stored crc.png
    data[at:at + 8] = bytes(x ^ 0xFF for x in data[at:at + 8])
    batch = collect_images([("photos.zip", bytes(data))])
    assert any("cat/crc.png" in p and "damaged" in p for p in batch.problems)
    g, problems = Gallery.from_images(batch.images)
    feats = g.features(MeanColour())
    assert len(g) == 1 and feats.shape == (1, 3) and g.ids[0].endswith("good")
    assert any("cut" in p for p in problems + g.skipped)
