"""The serving contract over real ONNX Runtime sessions and real sketches."""
import json
from collections.abc import Mapping
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from sbir_core import Gallery, available_backends, load_backend
from sbir_core.backends import ModelFileError
from sbir_core.config import MODELS_DIR
from sbir_core.data.preprocess import BlankSketchError


def test_unknown_backend_lists_valid_names():
    with pytest.raises(ValueError, match="valid names: .*pretrained.*random"):
        load_backend("nope")


def test_available_backends_includes_baselines():
    names = available_backends(include_baselines=True)
    assert "pretrained" in names and "random" in names


def test_pretrained_search_on_real_data(small_photo_dir, sketchy_dir):
    gallery = Gallery.from_folder(small_photo_dir)
    backend = load_backend("pretrained")
    sketch = sorted((sketchy_dir / "sketch" / "airplane").iterdir())[0]
    r = backend.search(Image.open(sketch), gallery, k=7)
    assert len(r.ids) == 7 and len(set(r.ids)) == 7
    assert np.all(np.diff(r.scores) <= 1e-6)                      # best first
    assert set(r.labels) <= {"airplane", "cat", "shoe", "teapot"}
    assert set(r.extras["timings_ms"]) == {"preprocess", "encode", "search", "total"}
    # same answer from the batch path that evaluation uses
    s = backend.score_matrix([sketch], gallery)[0]
    assert np.allclose(np.sort(s)[::-1][:7], r.scores, atol=1e-5)


def test_blank_sketch_is_a_clear_error(small_photo_dir):
    with pytest.raises(BlankSketchError):
        load_backend("pretrained").search(Image.new("L", (300, 300), 255), Gallery.from_folder(small_photo_dir))


def test_random_baseline_is_repeatable(small_photo_dir, sketchy_dir):
    g = Gallery.from_folder(small_photo_dir)
    sk = sorted((sketchy_dir / "sketch" / "cup").iterdir())[0]
    a, b = load_backend("random").search(sk, g, k=20), load_backend("random").search(sk, g, k=20)
    assert a.ids == b.ids and len(a.ids) == 20


def test_damaged_and_missing_model_files_say_how_to_rebuild(tmp_path, monkeypatch):
    import sbir_core.backends.embedding as emb
    for f in ("pretrained.json",):
        shutil.copy(MODELS_DIR / f, tmp_path / f)
    (tmp_path / "backbone_lite0.onnx").write_bytes(b"not a model")
    monkeypatch.setattr(emb, "MODELS_DIR", tmp_path)
    with pytest.raises(ModelFileError, match="damaged.*export"):
        load_backend("pretrained")
    (tmp_path / "backbone_lite0.onnx").unlink()
    with pytest.raises(ModelFileError, match="missing.*export"):
        load_backend("pretrained")


def test_gallery_from_uploaded_bytes_skips_bad_files():
    import io
    b = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(b, format="PNG")
    g, problems = Gallery.from_images([("good.png", b.getvalue()), ("bad.png", b"garbage")])
    assert g.ids == ["00000-good"] and len(problems) == 1 and "bad.png" in problems[0]
    feats = g.features(load_backend("pretrained"))
    assert feats.shape == (1, 1280)


def test_serving_never_imports_torch(small_photo_dir, sketchy_dir):
    sketch = sorted((sketchy_dir / "sketch" / "cup").iterdir())[0]
    code = (f"import sys; from sbir_core import *; g = Gallery.from_folder({str(small_photo_dir)!r});"
            f"[load_backend(n).search({str(sketch)!r}, g) for n in available_backends(True)];"
            "print('torch' in sys.modules, 'streamlit' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_classifier_ranks_a_known_photo_above_a_guessed_one():
    """Label lookup on hand-made features: photos labelled with the sketch's class come first; an
    unlabelled photo takes the photo classifier's class, weighted by its confidence."""
    from sbir_core.backends.classifier import ClassifierBackend
    b = object.__new__(ClassifierBackend)
    b.meta = {"classes": ["apple", "pear", "cup"]}
    photos = np.array([[0.1, 0.8, 0.1],      # labelled pear
                       [0.6, 0.3, 0.1],      # unlabelled, guessed apple (0.6)
                       [0.2, 0.1, 0.7],      # labelled apple (the photo classifier disagrees)
                       [0.1, 0.1, 0.8]])     # unlabelled, guessed cup
    labels = ["pear", None, "apple", None]
    s = b.score(np.array([[0.7, 0.2, 0.1]]), photos, labels)[0]
    assert list(np.argsort(-s)) == [2, 1, 0, 3]      # known apple, guessed apple (0.7 x 0.6), pear, cup
    assert s[1] == pytest.approx(0.7 * 0.6, abs=1e-6)
    assert b.score(np.array([[0.1, 0.1, 0.8]]), photos, labels)[0].argmax() == 3   # same memo, other query


def test_what_the_app_asks_is_declared_on_every_backend(small_photo_dir):
    """The card score's meaning and retrieval by similarity are part of the Backend protocol, so the
    app asks instead of probing for methods: backends that read kinds score probabilities, cosine
    backends retrieve by similarity, and the others say they cannot, in a sentence."""
    gallery = Gallery.from_folder(small_photo_dir)
    sketch = Image.new("RGB", (64, 64), "white")
    sketch.paste((0, 0, 0), (10, 30, 54, 34))
    want = {"classifier": ("probability", False), "random": ("rank", False), "triplet": ("similarity", True),
            "instance": ("similarity", True), "pretrained": ("similarity", True)}
    for name, (card, by_similarity) in want.items():
        backend = load_backend(name)
        assert backend.card_score == card, name
        if not by_similarity:
            assert backend.default_threshold is None, name
            with pytest.raises(TypeError, match="does not retrieve by similarity"):
                backend.search_within(sketch, gallery, 0.3)
        else:
            assert backend.default_threshold == backend.meta.get("default_threshold", 0.5 if name != "instance" else 0.2)
            assert len(backend.search_within(sketch, gallery, -1.0).ids) > 0, name
    assert load_backend("cgan").card_score == "mixed"                  # the class reading is mixed in
    assert isinstance(load_backend("random").meta, Mapping) and not load_backend("random").meta
