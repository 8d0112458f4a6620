"""The committed bundled gallery against its own files, and galleries made from folders."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sbir_core.backends import load_backend
from sbir_core.backends.onnx_model import ModelFileError
from sbir_core.config import MODELS_DIR
from sbir_core.data.classes import VOCABULARY
from sbir_core.data.preprocess import load_image
from sbir_core.gallery import BUNDLED_DIR, METADATA_COLUMNS, Gallery

ROWS = list(csv.DictReader(open(BUNDLED_DIR / "metadata.csv", newline="", encoding="utf-8")))


def test_metadata_has_the_expected_columns():
    with open(BUNDLED_DIR / "metadata.csv", newline="", encoding="utf-8") as f:
        assert tuple(csv.reader(f).__next__()) == METADATA_COLUMNS


def test_every_photo_file_exists_and_is_readable():
    for r in ROWS:
        path = BUNDLED_DIR / r["file"]
        assert path.is_file(), r["file"]
        im = load_image(path)
        assert im.mode == "RGB" and max(im.size) <= 256 and min(im.size) >= 16, (r["file"], im.mode, im.size)


def test_no_image_file_is_left_out_of_the_metadata():
    listed = {r["file"] for r in ROWS}
    on_disk = {p.relative_to(BUNDLED_DIR).as_posix() for p in (BUNDLED_DIR / "images").iterdir()}
    assert on_disk == listed


def test_ids_unique_and_labels_in_vocabulary_or_unlabelled():
    ids = [r["id"] for r in ROWS]
    assert len(set(ids)) == len(ids)
    bad = [(r["id"], r["label"]) for r in ROWS if r["label"] and r["label"] not in VOCABULARY]
    assert not bad


def test_every_row_names_its_source_licence_and_caption():
    for r in ROWS:
        assert r["source"].strip() and r["licence"].strip() and r["caption"].strip(), r["id"]


def test_size_and_class_coverage():
    assert len(ROWS) >= 300
    assert len({r["label"] for r in ROWS if r["label"]}) >= 80


def test_notice_lists_both_sources():
    text = (BUNDLED_DIR / "NOTICE").read_text(encoding="utf-8")
    assert "tuxpaint-stamps-default" in text and "GPL" in text and "scikit-image" in text
    assert (BUNDLED_DIR / "LICENSES" / "GPL-2").is_file()


def test_bundled_loads_as_a_gallery():
    g = Gallery.bundled()
    assert len(g) == len(ROWS)
    assert g.labels.count(None) == sum(1 for r in ROWS if not r["label"])


def test_bundled_pretrained_embeddings_match_the_rows():
    if not (MODELS_DIR / "pretrained.json").is_file():
        pytest.skip("no pretrained model files")
    try:
        backend = load_backend("pretrained")
    except ModelFileError as e:
        pytest.skip(str(e))
    path = BUNDLED_DIR / "embeddings" / f"{backend.feature_key}.npy"
    assert path.is_file(), f"missing {path}: run python -m sbir_core.build_gallery --index"
    feats = np.load(path)
    assert feats.shape[0] == len(ROWS) and np.isfinite(feats).all()


def _tiny(path: Path, colour: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 24), colour).save(path)


def test_from_folder_labelled(tmp_path):
    _tiny(tmp_path / "dog" / "a.png", (200, 10, 10))
    _tiny(tmp_path / "dog" / "b.jpg", (10, 200, 10))
    _tiny(tmp_path / "Hot Air Balloon" / "c.png", (10, 10, 200))
    _tiny(tmp_path / "not_a_class" / "d.png", (50, 50, 50))
    g = Gallery.from_folder(tmp_path)
    assert len(g) == 4
    assert sorted(g.labels, key=str) == sorted(["dog", "dog", "hot-air_balloon", None], key=str)
    assert len(set(g.ids)) == 4
    assert g.image(0).size == (32, 24)


def test_from_folder_flat_is_unlabelled(tmp_path):
    for n in range(3):
        _tiny(tmp_path / f"p{n}.png", (n * 60, 0, 0))
    (tmp_path / "notes.txt").write_text("not an image")
    g = Gallery.from_folder(tmp_path)
    assert len(g) == 3 and g.labels == [None, None, None]
