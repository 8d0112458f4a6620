"""The `cgan` backend: training runs, export matches torch and is deterministic, serving returns the
imaginary photo with a ranking."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from sbir_core.config import MODELS_DIR
from sbir_core.nets.pix2pix import PatchDiscriminator, UNetGenerator, unet_depth
from sbir_core.train.cgan import CGANConfig, random_jitter, train

TINY = dict(res=32, feat_res=64, ngf=8, max_mult=4, ndf=8, batch=4)


def test_unet_depth_and_shapes():
    assert unet_depth(64) == 6 and unet_depth(256) == 8
    for res in (32, 64):
        G = UNetGenerator(res, ngf=8)
        y = G(torch.randn(2, 3, res, res))
        assert y.shape == (2, 3, res, res) and y.abs().max() <= 1
    d = PatchDiscriminator(8, 2)(torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64))
    assert d.shape[:2] == (2, 1) and d.shape[-1] > 1                  # a grid of patch logits


def test_eval_mode_is_deterministic_and_train_mode_is_not():
    """Dropout is the generator's noise in training; serving (eval) switches it off on purpose."""
    torch.manual_seed(0)
    G = UNetGenerator(32, ngf=8, n_dropout=2)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        G.train()
        assert not torch.allclose(G(x), G(x))
        G.eval()
        assert torch.equal(G(x), G(x))


def test_random_jitter_crops_sketch_and_photo_alike():
    grid = torch.arange(16.0).expand(64, 3, 16, 16).contiguous()          # value = column index
    s, p = random_jitter(grid, grid.clone(), 4, np.random.default_rng(0))
    assert s.shape == grid.shape and torch.equal(s, p)                    # the pair moves together, keeps its size
    left = s[:, 0, 0, 0]
    assert len(set(left.tolist())) > 1                                    # samples get different offsets
    assert left.min() >= 0 and left.max() <= 4                            # shifted by at most `jitter` pixels


@pytest.mark.slow
def test_export_parity_and_determinism(tmp_path):
    from export.cgan import PHOTO_FILE, SKETCH_FILE, export
    torch.manual_seed(0)
    cfg = CGANConfig(**TINY)
    errs = export(cfg, None, tmp_path, pretrained=False)
    assert max(errs.values()) < 1e-3
    meta = json.loads((tmp_path / "cgan.json").read_text())
    assert meta["preprocess"]["size"] == 32 and meta["photo_preprocess"]["size"] == 64
    sess = ort.InferenceSession(str(tmp_path / SKETCH_FILE), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    (img1, emb1), (img2, emb2) = sess.run(None, {"input": x}), sess.run(None, {"input": x})
    assert img1.shape == (3, 3, 32, 32) and emb1.shape == (3, 1280)
    assert 0 <= img1.min() and img1.max() <= 1
    assert np.array_equal(img1, img2) and np.array_equal(emb1, emb2)      # no dropout at serving
    one = sess.run(None, {"input": x[:1]})[1]                              # dynamic batch
    assert np.allclose(one, emb1[:1], atol=1e-4)
    psess = ort.InferenceSession(str(tmp_path / PHOTO_FILE), providers=["CPUExecutionProvider"])
    assert psess.run(None, {"input": np.zeros((2, 3, 64, 64), np.float32)})[0].shape == (2, 1280)


@pytest.mark.slow
def test_training_runs_two_steps_on_tiny_real_data(tmp_path, sketchy_dir):
    cfg = CGANConfig(**TINY, steps=2, limit_photos=6, sample_every=2, eval_every=2, val_queries=8,
                     out_dir=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"),
                     curves_path=str(tmp_path / "curves.json"), data=str(sketchy_dir.parent))
    ckpt = train(cfg)
    ck = torch.load(ckpt, weights_only=False)
    assert ck["step"] == 2 and ck["config"]["res"] == 32
    curves = json.loads((tmp_path / "curves.json").read_text())
    assert {"step", "d_loss", "g_gan", "g_l1", "g_feat", "val_l1", "val_mAP"} <= set(curves[-1])
    assert all(np.isfinite(curves[-1][k]) for k in ("d_loss", "g_l1", "g_feat"))
    assert (tmp_path / "run" / "samples" / "step000002.png").is_file()
    # a time budget (for a leased GPU) ends the run early; its last step is still evaluated and saved
    budget = train(replace(cfg, steps=1000, max_minutes=1e-6, out_dir=str(tmp_path / "run2")))
    assert torch.load(budget, weights_only=False)["step"] == 1
    jittered = train(replace(cfg, steps=1, jitter=4, out_dir=str(tmp_path / "run3")))      # E2 targets per batch
    assert torch.load(jittered, weights_only=False)["config"]["jitter"] == 4
    # the split is respected: no test photo is in the training cache
    from sbir_core.data.splits import split_of
    from sbir_core.train.cgan import sketchy_pairs
    photos, sketches = sketchy_pairs(sketchy_dir.parent)
    assert {split_of(p.photo_id) for p in photos} <= {"train", "val"}
    assert {split_of(s.photo_id) for s in sketches} <= {"train", "val"}


def test_backend_search_returns_imaginary_photo(small_photo_dir, sketchy_dir):
    if not (MODELS_DIR / "cgan.json").is_file():
        pytest.skip("cgan is not exported")
    from sbir_core import Gallery, load_backend
    backend = load_backend("cgan")
    gallery = Gallery.from_folder(small_photo_dir)
    sketch = sorted((sketchy_dir / "sketch" / "airplane").iterdir())[0]
    r = backend.search(Image.open(sketch), gallery, k=5)
    assert len(r.ids) == 5 and np.all(np.diff(r.scores) <= 1e-6)
    im = r.extras["imaginary"]
    assert isinstance(im, Image.Image) and im.mode == "RGB" and im.size[0] >= 128
    assert np.asarray(im).std() > 1                                        # not a flat image
    assert gallery.features(backend).shape == (len(gallery), 1280)
    # deterministic: the same sketch gives the same imaginary photo and ranking
    r2 = backend.search(Image.open(sketch), gallery, k=5)
    assert r2.ids == r.ids and np.array_equal(np.asarray(r2.extras["imaginary"]), np.asarray(im))


# -- version 2 (sbir_core.train.cgan_v2): resize-convolution G, class conditioning, edge-map pairs --
V2_TINY = dict(res=32, sketch_res=96, feat_res=64, ngf=8, max_mult=4, ndf=8, batch=4, cond_emb=8)


def test_resize_upsampling_has_no_checkerboard_and_conditioning_matters():
    """A stride-2 transposed conv with random weights prints a period-2 grid on a flat input; resize-then-
    convolve cannot (every output pixel sees the same taps). The class posterior changes the photo."""
    from sbir_core.bench.image_quality import checkerboard_ratio
    from sbir_core.nets.pix2pix import ResizeUp, Up
    torch.manual_seed(0)
    flat = torch.ones(4, 16, 8, 8)
    with torch.no_grad():
        t = Up(16, 3, 0.0)(flat).numpy()
        r = ResizeUp(16, 3, 0.0, norm=False)(flat).numpy()
    assert t.std(axis=(2, 3)).mean() > 1e-3                              # transposed: a pattern from nothing
    assert r[..., 1:-1, 1:-1].std(axis=(2, 3)).max() < 1e-5                # resize: flat stays flat inside
    G = UNetGenerator(32, ngf=8, upsample="resize", cond_dim=5, cond_emb=4).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        a, b = G(x, torch.eye(5)[[0, 0]]), G(x, torch.eye(5)[[3, 3]])
    assert a.shape == (2, 3, 32, 32) and not torch.allclose(a, b)
    with pytest.raises(ValueError):
        G(x)                                                               # conditioned G needs the posterior
    assert checkerboard_ratio(a.numpy()) < 100


def test_edge_share_moves_from_edges_to_sketches():
    from sbir_core.train.cgan_v2 import CGANv2Config, edge_share
    cfg = CGANv2Config(edge_start=0.8, edge_end=0.2)
    assert edge_share(cfg, 0.0) == pytest.approx(0.8) and edge_share(cfg, 1.0) == pytest.approx(0.2)
    assert edge_share(cfg, 0.5) == pytest.approx(0.5) and edge_share(cfg, 7.0) == pytest.approx(0.2)


@pytest.mark.slow
def test_v2_generator_export_parity_two_inputs(tmp_path):
    from export.cgan import GEN_FILE, export_generator, generator_module
    from sbir_core.train.cgan_v2 import N_CLASSES, CGANv2Config
    torch.manual_seed(0)
    cfg = CGANv2Config(**V2_TINY)
    err = export_generator(cfg, None, tmp_path / GEN_FILE)
    assert err < 1e-3
    sess = ort.InferenceSession(str(tmp_path / GEN_FILE), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input", "class_probs"]
    x = np.random.default_rng(0).standard_normal((3, 3, 96, 96)).astype(np.float32)
    c = np.full((3, N_CLASSES), 1 / N_CLASSES, np.float32)
    img, e2in = sess.run(None, {"input": x, "class_probs": c})
    assert img.shape == (3, 3, 32, 32) and e2in.shape == (3, 3, 64, 64)
    assert 0 <= img.min() and img.max() <= 1 and np.array_equal(img, sess.run(None, {"input": x, "class_probs": c})[0])
    import onnx
    m = onnx.load(str(tmp_path / GEN_FILE))
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in m.graph.initializer)   # weights in fp16


@pytest.mark.slow
def test_v2_training_runs_and_resumes_on_tiny_real_data(tmp_path, sketchy_dir):
    from sbir_core.data.splits import split_of
    from sbir_core.train.cgan_v2 import CGANv2Config, build_cache, train as train_v2
    cfg = CGANv2Config(**V2_TINY, steps=2, limit_photos=6, eval_every=2, val_queries=8, max_minutes=0,
                       out_dir=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"),
                       curves_path=str(tmp_path / "curves.json"), data=str(sketchy_dir.parent))
    ck = torch.load(train_v2(cfg), weights_only=False)
    assert ck["step"] == 2 and ck["config"]["version"] == 2
    curves = json.loads((tmp_path / "curves.json").read_text())
    assert {"d", "gan", "fm", "l1", "feat", "val_l1", "val_mAP", "edge_share"} <= set(curves[-1])
    assert all(np.isfinite(curves[-1][k]) for k in ("d", "fm", "l1", "feat"))
    again = torch.load(train_v2(replace(cfg, steps=3), resume=True), weights_only=False)   # resumes, not restarts
    assert again["step"] == 3 and len(again["curves"]) == 2
    data = build_cache(cfg)
    assert data["sketch_post"].shape == (len(data["sketches"]), 365)
    assert np.allclose(data["sketch_post"].astype(np.float32).sum(1), 1, atol=1e-2)
    assert "val" not in set(data["photo_split"][data["edge_photo"]])      # val photos stay unseen
    assert "test" not in set(data["photo_split"])                          # and test photos are never read


def test_backend_mixes_the_class_reading_into_the_score(small_photo_dir, sketchy_dir):
    """Serving with the classifier's chain: with class_mix a labelled photo's score is the cosine plus
    class_mix x P(its class), an unlabelled photo's the cosine alone; a threshold still means a cosine."""
    meta = json.loads((MODELS_DIR / "cgan.json").read_text()) if (MODELS_DIR / "cgan.json").is_file() else {}
    if "class_model" not in meta:
        pytest.skip("the shipped cgan model does not read the sketch classifier")
    from sbir_core import Gallery, load_backend
    from sbir_core.data.preprocess import sketch_input
    backend = load_backend("cgan")
    sketch = sorted((sketchy_dir / "sketch" / "cat").iterdir())[0]
    x = sketch_input(sketch, backend.preprocess)[None]
    imag, emb, probs = backend.imagine(x)
    assert imag.shape[:2] == (1, 3) and emb.shape == (1, 1280) and probs.shape == (1, 365)
    assert 0 <= imag.min() and imag.max() <= 1 and abs(float(probs.sum()) - 1) < 1e-3
    gallery = Gallery.from_folder(small_photo_dir)
    feats = gallery.features(backend)
    backend.class_mix = 0.5
    q, extras = backend.encode_sketches(x)
    assert q.shape == (1, 1280 + 365) and extras["top_classes"][0][1] == pytest.approx(float(probs.max()))
    labels = list(gallery.labels)
    cos = q[:, :1280] @ feats.T
    mixed = backend.score(q, feats, labels)
    cls = [backend.classes.index(lab) for lab in labels]
    assert np.allclose(mixed, cos + 0.5 * probs[:, cls], atol=1e-6)
    unlabelled = [None] * len(labels)
    assert np.allclose(backend.score(q, feats, unlabelled), cos, atol=1e-6)
    backend.class_mix = 100.0
    r = backend.search(sketch, gallery, k=len(gallery))
    best = max(set(labels), key=lambda lab: probs[0, backend.classes.index(lab)])
    assert r.labels[:5] == [best] * 5                                     # the class reading orders classes
    assert np.allclose(r.scores, cos[0][r.indices], atol=1e-5)            # cards: the imaginary photo's cosine
    assert np.all(np.diff(r.extras["rank_scores"]) <= 1e-6)               # the order: the mixed score
    assert "query" not in r.extras
    within = backend.search_within(sketch, gallery, 0.3)
    cos_of = dict(zip(range(len(labels)), cos[0]))
    assert all(cos_of[i] >= 0.3 for i in within.indices)
    assert len(within.ids) == sum(c >= 0.3 for c in cos[0])
    backend.class_mix = float(meta.get("class_mix", 0.0))                 # load_backend may share this instance


def test_area_resize_shrinks_a_sketch_as_prepare_sketch_does(sketchy_dir):
    """A version-1 G behind the classifier's 192 px input: the sketch, prepared at 192 and area-resized
    to 128, is within ~5 grey levels (on average) of the sketch prepared at 128 directly."""
    from sbir_core.backends.cgan import area_resize
    from sbir_core.data.preprocess import Preprocess, sketch_input
    sketch = sorted((sketchy_dir / "sketch" / "teapot").iterdir())[0]
    x192 = sketch_input(sketch, Preprocess(size=192))[None]
    x128 = sketch_input(sketch, Preprocess(size=128))[None]
    y = area_resize(x192, 128)
    assert y.shape == (1, 3, 128, 128) and y.dtype == np.float32
    assert np.abs(y - x128).mean() < 0.06 and np.array_equal(y[:, 0], y[:, 2])
    assert area_resize(x128, 128) is x128


def test_mixed_card_scores_say_what_they_are():
    from ui.cards import card_scores
    from sbir_core.backends.base import SearchResult
    r = SearchResult(["a", "b"], np.asarray([0.31, 0.42]), ["cat", None], np.asarray([0, 1]))
    cs = card_scores(r, "mixed")
    assert "P(the sketch shows the photo's class)" in cs.note and "cosine similarity" in cs.note
    assert cs.texts == ["#1 · 0.31", "#2 · 0.42"]
