"""The `instance` backend: its training pieces on toy tensors, its split of the shoe set, and the
served two-stage ranking on real held-out sketches (the right kind first, then the drawn photo)."""
import numpy as np
import pytest
import torch
from PIL import Image

from sbir_core import Gallery, load_backend
from sbir_core.config import MODELS_DIR
from sbir_core.data.preprocess import sketch_input
from sbir_core.data.readers import shoes
from sbir_core.data.splits import shoe_splits
from sbir_core.nets.instance import InstanceBranch
from sbir_core.train.instance import instance_report, threshold_curve, triplet

from .conftest import need_data


def need_model() -> None:
    if not (MODELS_DIR / "instance.json").is_file():
        pytest.skip("instance is not exported")


def test_triplet_loss_uses_the_hardest_allowed_negative():
    a = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=-1)
    p = a.clone()
    ok = torch.tensor([[False, True], [True, False]])
    assert triplet(a, p, ok, 0.2).item() == pytest.approx(0.0)          # own photo 1 closer than the other
    swapped = p.flip(0)                                                  # each sketch nearest the wrong photo
    assert triplet(a, swapped, ok, 0.2).item() == pytest.approx(1.2)
    none_allowed = torch.zeros(2, 2, dtype=torch.bool)                   # masked negatives never count
    assert triplet(a, swapped, none_allowed, 0.2).item() == pytest.approx(0.0)


def test_instance_ranks_and_threshold_curve():
    sim = np.array([[0.9, 0.5, 0.9], [0.1, 0.8, 0.3]])
    r = instance_report(sim, np.array([0, 1]))
    assert r["acc@1"] == 0.5 and r["acc@3"] == 1.0                      # a tie is not in the sketch's favour
    curve = {c["threshold"]: c for c in threshold_curve(sim, np.array([0, 1]), (0.5, 0.85))}
    assert curve[0.5] == {"threshold": 0.5, "recall": 1.0, "mean_returned": 2.0}
    assert curve[0.85] == {"threshold": 0.85, "recall": 0.5, "mean_returned": 1.0}
    from sbir_core.train.instance import pick_threshold
    val = {"sketchy": {"threshold_curve": threshold_curve(sim, np.array([0, 1]), (0.5, 0.82, 0.95))}}
    assert pick_threshold(val, recall=0.5) == 0.5                       # 0.82 keeps half, but is no slider stop
    val = {"sketchy": {"threshold_curve": threshold_curve(sim, np.array([0, 1]), (0.5, 0.8, 0.9, 0.95))}}
    assert pick_threshold(val, recall=0.5) == 0.9 and pick_threshold(val, recall=1.0) == 0.8   # highest that keeps it


@pytest.mark.parametrize("mode,dim", [("spatial", 32 * 36), ("pooled", 128), ("both", 32 * 36 + 128)])
def test_instance_branch_gives_unit_vectors_that_keep_the_layout(mode, dim):
    torch.manual_seed(0)
    net = InstanceBranch(mode).eval()
    f = torch.randn(3, 320, 6, 6)
    with torch.no_grad():
        e = net(f)
        moved = net(torch.roll(f, shifts=3, dims=3))                    # the same parts, elsewhere in the picture
    assert e.shape == (3, dim) and torch.allclose(e.norm(dim=-1), torch.ones(3), atol=1e-5)
    if mode == "spatial":                                               # where things are changes the embedding
        assert (e * moved).sum(-1).max() < 0.9


def test_shoe_split_holds_out_whole_shoes():
    root = need_data("shoes")
    photos, sketches = shoes(root)
    split = shoe_splits([p.photo_id for p in photos], {s.photo_id for s in sketches})
    assert split == shoe_splits([p.photo_id for p in reversed(photos)], {s.photo_id for s in sketches})   # fixed
    sketched = {s.photo_id for s in sketches}
    test = {i for i, s in split.items() if s == "test"}
    assert len(test) == round(0.2 * len(sketched)) and test <= sketched
    assert all(split[s.photo_id] == "test" for s in sketches if s.photo_id in test)
    from sbir_core.heldout import shoes as heldout_shoes
    ev = heldout_shoes()
    assert len(ev.gallery) == len(photos) and set(ev.query_photo_ids) == test


def test_two_stage_order_right_kind_first_then_by_similarity(held_out, small_photo_dir):
    """With the fusion weight at 0 the classes come in the classifier's order and, inside each class,
    the photos by instance cosine; cards show that cosine; the reading is the classifier's."""
    need_model()
    backend = load_backend("instance")
    classifier = load_backend("classifier")
    gallery = Gallery.from_folder(small_photo_dir)
    sketch = Image.open(held_out["cat"].path)
    backend.fusion_weight = 0.0
    r = backend.search(sketch, gallery, k=len(gallery))
    c = classifier.search(sketch, gallery, k=len(gallery))
    assert [x for x, _ in r.extras["top_classes"]] == [x for x, _ in c.extras["top_classes"]]
    blocks = [lab for i, lab in enumerate(r.labels) if i == 0 or r.labels[i - 1] != lab]
    assert len(blocks) == len(set(blocks)) == 4                         # classes never interleave
    assert blocks == [lab for i, lab in enumerate(c.labels) if i == 0 or c.labels[i - 1] != lab]
    for lab in blocks:                                                  # inside a class: closest first
        s = r.scores[np.asarray(r.labels) == lab]
        assert np.all(np.diff(s) <= 1e-6)
    feats = gallery.features(backend)
    q, _ = backend.encode_sketches(sketch_input(sketch, backend.preprocess)[None])
    assert np.allclose(r.scores, backend.similarity(q, feats)[0][r.indices], atol=1e-5)
    assert np.all(np.abs(r.scores) <= 1 + 1e-5)


def test_shipped_fusion_weight_mixes_class_and_instance_order(held_out, small_photo_dir):
    """As shipped (fusion weight from the metadata, 2.0, not 0): photos ranked by log P(kind) +
    w x instance cosine, so a close photo of the second most likely kind can pass a far one of the first."""
    from sbir_core.backends.instance import LOG_FLOOR
    backend = load_backend("instance")
    assert backend.fusion_weight == backend.meta["fusion_weight"] > 0
    gallery = Gallery.from_folder(small_photo_dir)
    sketch = Image.open(held_out["cat"].path)
    r = backend.search(sketch, gallery, k=len(gallery))
    q, _ = backend.encode_sketches(sketch_input(sketch, backend.preprocess)[None])
    feats = gallery.features(backend)
    mixed = (np.log(np.maximum(backend.kind_probability(q, feats, gallery.labels)[0], LOG_FLOOR))
             + backend.fusion_weight * backend.similarity(q, feats)[0])
    assert np.allclose(backend.score(q, feats, gallery.labels)[0], mixed, atol=1e-6)
    assert list(r.indices) == list(np.argsort(-mixed, kind="stable"))


def test_retrieval_by_threshold_counts_every_photo_within(held_out, small_photo_dir):
    need_model()
    backend = load_backend("instance")
    gallery = Gallery.from_folder(small_photo_dir)
    sketch = Image.open(held_out["airplane"].path)
    full = backend.search(sketch, gallery, k=len(gallery))
    t = float(np.sort(full.scores)[-7])
    kind = full.extras["class_probability"]                             # P(sketch shows the photo's kind)
    assert backend.class_gate > 0 and np.all((kind >= 0) & (kind <= 1))
    within = backend.search_within(sketch, gallery, t)
    ok = (full.scores >= t) & ((kind >= backend.class_gate) | (kind == kind.max()))
    assert len(within.ids) == int(ok.sum()) and within.ids == [i for i, k in zip(full.ids, ok) if k]
    assert np.all(within.scores >= t)
    gate, backend.class_gate = backend.class_gate, 0.0                  # no gate: every photo that close
    ungated = backend.search_within(sketch, gallery, t)
    backend.class_gate = gate
    assert len(ungated.ids) == int((full.scores >= t).sum()) >= 7
    assert backend.search_within(sketch, gallery, 1.01).ids == []
    with pytest.raises(ValueError, match="threshold"):
        backend.search_within(sketch, gallery, float("nan"))


def test_residual_branch_starts_as_the_centred_grid():
    """Before training, the residual branch is exactly the frozen grid's own spatial match (centred,
    flattened, unit length): training can only add to it."""
    torch.manual_seed(0)
    net = InstanceBranch("spatial", in_channels=96, residual=True).eval()
    with torch.no_grad():
        net.center.copy_(torch.randn(96, 6, 6))
        f = torch.randn(4, 96, 6, 6)
        e = net(f)
    want = torch.nn.functional.normalize((f - net.center).flatten(1), dim=-1)
    assert e.shape == (4, 96 * 36) and torch.allclose(e, want, atol=1e-6)


def test_cell_projection_is_the_fitted_whitening():
    from sbir_core.nets.instance import CellProjection, fit_cell_pca
    rng = np.random.default_rng(0)
    cells = rng.standard_normal((500, 20)) @ rng.standard_normal((20, 20)) + 3.0       # (M, C) correlated, offset
    mean, comps = fit_cell_pca(cells, 8)
    proj = CellProjection(mean, comps)
    x = torch.from_numpy(cells.astype(np.float32).reshape(500, 20, 1, 1))
    y = proj(x).reshape(500, 8).numpy()
    assert np.allclose(y.mean(0), 0, atol=1e-3) and np.allclose(np.cov(y.T), np.eye(8), atol=1e-2)


def test_trained_blocks_start_as_the_frozen_trunk_and_keep_imagenet_statistics():
    """The sketch side that trains trunk blocks 13-15 is, before training, the frozen-grid model it
    starts from (whole trunk, projection, branch); split anywhere, served behind the classifier's
    shorter trunk through frozen blocks up to the first trained one, it is the same function. While
    training, its blocks' batch-norm statistics do not move."""
    from sbir_core.nets.backbone import Trunk, lite0
    from sbir_core.nets.instance import CellProjection, FrozenBlocksThen, Projected, TrainedBlocks
    torch.manual_seed(0)
    net, branch = lite0().eval(), InstanceBranch("spatial", in_channels=8, residual=True).eval()
    proj = CellProjection(torch.randn(320), torch.randn(8, 320) / 20)
    x = torch.randn(2, 3, 192, 192)                                      # the served 6 x 6 grid
    trained = TrainedBlocks(branch, proj, 13).eval()
    with torch.no_grad():
        frozen_grid = Projected(proj, branch)(Trunk(net)(x))
        e = trained(Trunk(net, 13)(x))
        served = FrozenBlocksThen(trained, 11, end=13).eval()(Trunk(net, 11)(x))
    assert torch.allclose(e, frozen_grid, atol=1e-5) and torch.allclose(served, frozen_grid, atol=1e-5)
    bn = next(m for m in trained.blocks.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = bn.running_mean.clone()
    trained.train()
    assert branch.training and not bn.training
    trained(Trunk(net, 13)(x)).sum().backward()
    assert torch.equal(bn.running_mean, before) and bn.weight.grad is not None
    with pytest.raises(ValueError, match="do not fit"):
        FrozenBlocksThen(trained, 14, end=13)


def test_advance_runs_cached_features_through_the_frozen_blocks():
    """Training reads block-11 caches and trains blocks 13-15: the sketch-side arrays are moved on
    through blocks 11-12 once, in memory, and equal the trunk cut at block 13; photos stay as cached."""
    from sbir_core.nets.backbone import Trunk, lite0
    from sbir_core.train.instance import Domain, advance
    net = lite0().eval()
    x = torch.randn(6, 3, 64, 64)
    with torch.no_grad():
        b11, b13 = Trunk(net, 11)(x).numpy(), Trunk(net, 13)(x).numpy()
    photos = np.zeros((2, 2, 320, 2, 2), np.float16)
    recs = [{"photo_id": f"p{i}", "label": "shoe", "split": "train", "source": "shoes"} for i in range(2)]
    d = Domain("toy", b11.reshape(3, 2, *b11.shape[1:]), photos, b11[:4].reshape(2, 2, *b11.shape[1:]),
               recs + [dict(recs[0])], recs)
    advance({"toy": d}, 11, 13, batch=4)
    assert d.sketches.shape == (3, 2) + b13.shape[1:] and d.photos is photos
    assert np.allclose(d.sketches.reshape(b13.shape), b13, atol=2e-2)          # float16 storage
    assert np.allclose(d.edges.reshape(4, *b13.shape[1:]), b13[:4], atol=2e-2)


def test_block_photos_cache_needs_an_end_so_the_whole_trunk_cache_is_never_overwritten():
    """`--parts block_photos` writes photos_b<END>; without --end it would be the whole trunk's
    `photos` cache, which other trainers read: the CLI refuses with a message, build() raises."""
    import subprocess
    import sys
    from sbir_core.train.features import DEFAULT_PARTS, PARTS, build
    assert "block_photos" in PARTS and "block_photos" not in DEFAULT_PARTS       # the default run stays as it was
    r = subprocess.run([sys.executable, "-m", "sbir_core.train.features", "--parts", "block_photos"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "block_photos needs --end" in r.stderr and "Traceback" not in r.stderr
    with pytest.raises(ValueError, match="needs --end"):
        build(end=None, parts=["block_photos"])


def test_grid_heads_serve_what_the_trainer_reads_with_one_trunk_run_per_photo():
    """A branch on the block-11 grid (`--grid-from 11 --grid-pool 2`) trains on cached block-11
    features pooled in memory (`pool_grid`); served, the sketch side runs behind the classifier's
    block-8 trunk through frozen blocks 8-10, and the photo head returns that branch's embedding and
    the whole trunk's features (for the classifier's photo head) from the same block-8 input."""
    from sbir_core.nets.backbone import Trunk, lite0
    from sbir_core.nets.instance import CellProjection, FrozenBlocksThen, PhotoGridHead, Projected
    from sbir_core.train.instance import pool_grid
    torch.manual_seed(0)
    net = lite0().eval()
    x = torch.randn(2, 3, 96, 96)                                        # block-11 grid 6 x 6 -> pooled 3 x 3
    sketch_b, photo_b = (InstanceBranch("spatial", in_channels=8, residual=True, grid=3).eval() for _ in range(2))
    for b in (sketch_b, photo_b):
        with torch.no_grad():
            b.center.copy_(torch.randn(8, 3, 3))
    proj = CellProjection(torch.randn(112), torch.randn(8, 112) / 10)
    with torch.no_grad():
        b11 = Trunk(net, 11)(x)
        pooled = torch.from_numpy(pool_grid(b11.numpy()[:, None], 2)[:, 0].astype(np.float32))
        trained_sketch, trained_photo = sketch_b(proj(pooled)), photo_b(proj(pooled))
        b8 = Trunk(net, 8)(x)
        served = FrozenBlocksThen(Projected(proj, sketch_b, 2), 8, end=11).eval()(b8)
        emb, trunk_features = PhotoGridHead(Projected(proj, photo_b, 2), 8, 11).eval()(b8)
        whole = Trunk(net)(x)
    assert torch.allclose(served, trained_sketch, atol=2e-3)            # float16 cache storage
    assert torch.allclose(emb, trained_photo, atol=2e-3)
    assert torch.allclose(trunk_features, whole, atol=1e-5)
    with pytest.raises(ValueError, match="cannot be reached"):
        PhotoGridHead(photo_b, 12, 11)


def test_class_gate_keeps_likely_kinds_and_always_the_likeliest():
    """Retrieval by distance keeps photos of kinds the reading gives >= the gate; when no kind in
    the gallery reaches it (a doubtful reading), the likeliest kind still passes."""
    from sbir_core.backends.instance import kinds_within
    kind = np.array([[0.5, 0.04, 0.06], [0.01, 0.03, 0.02]])             # (Q, N) P(photo's kind)
    assert kinds_within(kind, 0.05).tolist() == [[True, False, True], [False, True, False]]
    assert kinds_within(kind[0], 0.0).all() and kinds_within(np.zeros(0), 0.05).shape == (0,)
