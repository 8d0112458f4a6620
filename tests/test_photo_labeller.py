"""The photo labeller over the whole vocabulary (sbir_core.train.photo_labeller): the reviewed
ImageNet map, the shipped ONNX file against its torch twin, what it files on the bundled gallery
with the labels hidden (its test: it never trains on those photos), and photo formats."""
from __future__ import annotations

import io
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from sbir_core import Gallery, load_backend
from sbir_core.gallery_kinds import filed_kinds, kinds_summary
from sbir_core.data.classes import SKETCHY_CLASSES, VOCABULARY, imagenet_vocabulary


def test_the_imagenet_map_is_reviewed_vocabulary():
    kinds = imagenet_vocabulary()
    assert len(kinds) == 1000 and set(kinds) - {None} <= set(VOCABULARY)
    from torchvision.models._meta import _IMAGENET_CATEGORIES as names
    got = dict(zip(names, kinds))
    for imagenet, kind in [("grand piano", "piano"), ("upright", "piano"), ("golden retriever", "dog"),
                           ("mountain tent", "tent"), ("cowboy hat", "hat"), ("book jacket", "book"),
                           ("pizza", "pizza"), ("ice cream", "ice_cream"), ("mountain bike", "bicycle"),
                           ("timber wolf", None), ("European fire salamander", None), ("web site", None)]:
        assert got[imagenet] == kind, imagenet
    assert len({k for k in kinds if k} - set(SKETCHY_CLASSES)) >= 75    # kinds beyond the probe's Sketchy ones


def test_the_shipped_labeller_is_its_torch_twin_and_sums_to_one():
    torch = pytest.importorskip("torch")
    from export.common import CHECKPOINTS, parity
    from export.trunk import FEATURE_SHAPE
    from sbir_core.config import MODELS_DIR
    from sbir_core.train.photo_labeller import PHOTO_HEAD, labeller
    net = labeller(torch.load(CHECKPOINTS / "classifier.pt", map_location="cpu", weights_only=False))
    x = torch.randn(4, *FEATURE_SHAPE)
    assert parity(net, MODELS_DIR / PHOTO_HEAD, x) < 1e-4
    with torch.no_grad():
        assert torch.allclose(net(x).sum(dim=1), torch.ones(4), atol=1e-5)


@pytest.fixture(scope="module")
def hidden():
    """The bundled gallery with its labels and reviewed names withheld: a visitor's folder."""
    g = Gallery.bundled()
    return g, replace(g, labels=[None] * len(g), info=[{} for _ in g.info], _features={})


def test_labels_hidden_the_labeller_files_photos_of_kinds_beyond_sketchy_and_is_mostly_right(hidden):
    truth, g = hidden
    classifier = load_backend("classifier")
    kinds = filed_kinds(g, classifier)
    pairs = [(k, t) for k, t in zip(kinds, truth.labels) if k and t]
    right = [k for k, t in pairs if k == t]
    assert len(right) / len(pairs) >= 0.85, (len(right), len(pairs))          # 211 / 237 shipped
    assert len(pairs) >= 0.5 * sum(1 for t in truth.labels if t)               # 237 of 432 shipped
    beyond = {k for k in right if k not in SKETCHY_CLASSES}
    assert len(beyond) >= 20, sorted(beyond)                                   # 24 shipped: broccoli, bus, ...
    assert kinds.count(None) > 0                                               # what it cannot tell stays unfiled


def test_what_the_labeller_is_unsure_of_stays_unfiled_and_reviewed_names_are_kept(hidden):
    truth, g = hidden
    classifier = load_backend("classifier")
    probs = g.features(classifier)
    t = classifier.meta["photo_label_threshold"]
    assert 0.3 < t < 0.95
    kinds = filed_kinds(g, classifier)
    assert all((k is None) == (p < t) for k, p in zip(kinds, probs.max(axis=1)))
    reviewed = filed_kinds(truth, classifier)                   # caption-only photos (a goat) fit no kind
    assert all(reviewed[i] is None for i, info in enumerate(truth.info) if info.get("display") and not truth.labels[i])
    assert filed_kinds(g, load_backend("triplet")) is None     # a backend that does not label photos cannot say


def test_kinds_summary_lists_counts_and_says_what_is_missing():
    count = Counter({"cat": 6, "camel": 4, "car_(sedan)": 7})
    assert kinds_summary(count) == "camel (4) · car (sedan) (7) · cat (6)"
    assert kinds_summary(count, "ca") == "camel (4) · car (sedan) (7) · cat (6)"
    assert kinds_summary(count, "Hat") == "No photos of hat here."
    assert "not a kind" in kinds_summary(count, "<b>qwzx</b>")


def _encoded(im: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


def test_transparent_paletted_cmyk_and_16_bit_photos_read_as_the_same_photo():
    from sbir_core.gallery import BUNDLED_DIR
    base = Image.open(BUNDLED_DIR / "images" / "tuxpaint-animals-amphibians-frog.jpg").convert("RGB")
    rgba = np.asarray(base.convert("RGBA")).copy()
    rgba[:20, :, 3] = 0                                         # a transparent band: composited onto white
    grey16 = Image.fromarray(np.asarray(base.convert("L"), np.uint16) * 257)
    assert grey16.mode == "I;16"
    files = [("IMG_0001.JPG", _encoded(base, "JPEG")), ("transparent.png", _encoded(Image.fromarray(rgba))),
             ("palette.png", _encoded(base.convert("P"))), ("cmyk.jpg", _encoded(base.convert("CMYK"), "JPEG")),
             ("grey16.png", _encoded(grey16)), ("grey-alpha.png", _encoded(base.convert("LA"))),
             ("palette-alpha.png", _encoded(Image.fromarray(rgba).convert("P")))]
    gallery, problems = Gallery.from_images(files)
    assert problems == [] and len(gallery) == len(files)
    classifier = load_backend("classifier")
    feats = gallery.features(classifier)
    assert gallery.skipped == []
    assert [classifier.meta["classes"][i] for i in feats.argmax(axis=1)] == ["frog"] * len(files)
    from sbir_core.data.preprocess import photo_input
    x = [photo_input(src, classifier.photo_preprocess) for src in gallery.sources]
    grey8 = photo_input(_encoded(base.convert("L")), classifier.photo_preprocess)
    assert np.abs(x[4] - grey8).mean() < 0.03 and np.abs(x[4] - grey8).max() < 0.1   # 16 bits scaled, not clipped white
    assert (x[1][:, :3] > 0.99).all()                          # the transparent band is white, not black
