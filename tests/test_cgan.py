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
