"""The `context` backend: pretext pairs (geometry, domains, labels), its networks, the fp16 ONNX
export, and the served backend on real sketches and photos."""
import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from sbir_core import Gallery, load_backend
from sbir_core.config import MODELS_DIR
from sbir_core.data.preprocess import BlankSketchError, ImageInputError
from sbir_core.train import context as ctx


@pytest.mark.parametrize("label", range(8))
def test_patches_lie_in_the_image_apart_and_in_the_labelled_direction(label):
    rng = np.random.default_rng(label)
    gaps = set()
    for _ in range(200):
        (cy, cx), (ny, nx) = ctx.patch_corners(label, rng)
        for y, x in ((cy, cx), (ny, nx)):
            assert 0 <= y <= ctx.IMAGE - ctx.PATCH and 0 <= x <= ctx.IMAGE - ctx.PATCH
        dy, dx = ctx.OFFSETS[label]
        for d, step in ((ny - cy, dy), (nx - cx, dx)):           # a full pitch that way, or level (jitter only)
            assert (abs(d) <= 2 * ctx.JITTER) if step == 0 else (np.sign(d) == step and abs(d) >= ctx.PATCH)
        # never overlapping: along the offset's axis there is a gap of at least GAP - 2 * JITTER
        gap = max(abs(ny - cy) if dy else -1, abs(nx - cx) if dx else -1) - ctx.PATCH
        assert gap >= ctx.GAP - 2 * ctx.JITTER
        gaps.add(gap)
    assert len(gaps) > 5                                          # the spacing is uneven (jitter)


def _coordinate_images(n: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Photos whose red channel is the column and green the row; edge maps a flat 255 (blank)."""
    yy, xx = np.mgrid[:ctx.IMAGE, :ctx.IMAGE]
    photo = np.stack([xx, yy, np.full_like(xx, 7)], axis=-1).astype(np.uint8)
    return np.repeat(photo[None], n, 0), np.full((n, ctx.IMAGE, ctx.IMAGE), 255, np.uint8)


def test_pair_labels_follow_the_patches_positions_also_when_mirrored():
    photos, edges = _coordinate_images()
    cfg = ctx.ContextConfig(cross=False, grey_photo=0.0)
    a, b, y = ctx.sample_pairs(photos, edges, np.zeros(400, int), np.random.default_rng(0), cfg)
    checked = flipped = 0
    for pa, pb, lab in zip(a, b, y):
        if pa[..., 2].mean() != 7:                                # an edge/edge pair: no coordinates
            continue
        mirror = pa[0, -1, 0] < pa[0, 0, 0]                       # columns run backwards
        dy, dx = ctx.OFFSETS[lab]
        for d, step in ((pb[..., 1].mean() - pa[..., 1].mean(), dy),
                        (pb[..., 0].mean() - pa[..., 0].mean(), -dx if mirror else dx)):
            assert (abs(d) <= 2 * ctx.JITTER) if step == 0 else (np.sign(d) == step and abs(d) >= ctx.PATCH)
        checked += 1
        flipped += mirror
    assert checked > 150 and 0.3 < flipped / checked < 0.7
    assert set(np.unique(y)) == set(range(8))


@pytest.mark.parametrize("cross", [True, False])
def test_cross_domain_pairs_take_one_patch_from_each_domain(cross):
    photos, edges = _coordinate_images()
    cfg = ctx.ContextConfig(cross=cross)
    a, b, _ = ctx.sample_pairs(photos, edges, np.zeros(300, int), np.random.default_rng(1), cfg)
    is_edge = lambda p: bool((p == 255).all())                    # noqa: E731
    kinds = [(is_edge(pa), is_edge(pb)) for pa, pb in zip(a, b)]
    mixed = sum(ka != kb for ka, kb in kinds)
    if cross:
        assert mixed == len(kinds)
        assert 0.35 < np.mean([ka for ka, _ in kinds]) < 0.65     # either domain comes first
    else:
        assert mixed == 0 and 0.35 < np.mean([ka for ka, _ in kinds]) < 0.65


def test_context_net_predicts_eight_positions_and_the_encoder_embeds_any_size():
    from sbir_core.nets.context import AlexNetSmall, ContextNet
    net = ContextNet(AlexNetSmall()).eval()
    a = ctx.normalise(np.zeros((3, 64, 64, 3), np.uint8))
    assert a.shape == (3, 3, 64, 64) and float(a.min()) == -1.0
    assert net(a, a).shape == (3, 8)
    assert net.encoder(ctx.normalise(np.zeros((2, 128, 128), np.uint8))).shape == (2, 256)   # grey -> 3 channels


def test_lite0_encoder_keeps_its_frozen_imagenet_part_in_eval_mode():
    from sbir_core.nets.context import Lite0Encoder
    enc = Lite0Encoder(True, frozen_blocks=5).train()
    assert not any(p.requires_grad for p in enc.frozen.parameters())
    assert not enc.bn0.training and not enc.blocks[4].training and enc.blocks[5].training
    assert any(p.requires_grad for p in enc.blocks[5].parameters())


def test_fp16_weight_export_matches_torch(tmp_path):
    """Weights stored in half precision behind Casts: the file shrinks, outputs match the torch module
    holding the same (fp16-rounded) weights, batch norm included."""
    from export.context import export_fp16
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 4))
    with torch.no_grad():
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
        for p in net.parameters():
            p.copy_(p.half().float())
        for b in (net[1].running_mean, net[1].running_var):
            b.copy_(b.half().float())
    export_fp16(net.eval(), tmp_path / "m.onnx", 32)
    x = torch.randn(5, 3, 32, 32)
    out = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"input": x.numpy()})[0]
    with torch.no_grad():
        assert np.abs(out - net(x).numpy()).max() < 1e-5
    import onnx
    types = {i.data_type for i in onnx.load(str(tmp_path / "m.onnx")).graph.initializer if len(i.dims) and
             np.prod(i.dims) >= 64}
    assert types == {onnx.TensorProto.FLOAT16}


def need_model() -> None:
    if not (MODELS_DIR / "context.json").is_file():
        pytest.skip("context is not exported")


def test_context_backend_serves_one_shared_encoder(sketchy_dir, small_photo_dir):
    need_model()
    backend = load_backend("context")
    assert backend.meta["sketch_model"] == backend.meta["photo_model"] == "context_encoder.onnx"
    gallery = Gallery.from_folder(small_photo_dir)
    feats = gallery.features(backend)
    assert feats.shape == (20, backend.meta["embedding_dim"])
    assert abs(np.linalg.norm(feats, axis=1) - 1).max() < 1e-4
    sketch = next((sketchy_dir / "sketch" / "cat").iterdir())
    r = backend.search(Image.open(sketch), gallery, k=20)
    assert len(r.ids) == 20 and np.all(np.diff(r.scores) <= 1e-6) and np.all(np.abs(r.scores) <= 1 + 1e-5)
    # the scores are cosines against the same encoder's embedding of the sketch (edge-domain input path)
    from sbir_core.data.preprocess import sketch_input
    sess = ort.InferenceSession(str(MODELS_DIR / "context_encoder.onnx"), providers=["CPUExecutionProvider"])
    q = sess.run(None, {"input": sketch_input(sketch, backend.preprocess)[None]})[0][0]
    assert np.allclose(r.scores, feats[r.indices] @ (q / np.linalg.norm(q)), atol=1e-4)


def test_context_backend_refuses_bad_input(small_photo_dir):
    need_model()
    backend = load_backend("context")
    gallery = Gallery.from_folder(small_photo_dir)
    with pytest.raises(BlankSketchError):
        backend.search(Image.new("RGB", (300, 300), "white"), gallery)
    with pytest.raises(ImageInputError):
        backend.search(b"not an image", gallery)
    with pytest.raises(ValueError):
        backend.search(np.full((64, 64), np.nan), gallery)
    with pytest.raises(ValueError):
        backend.search(Image.new("L", (64, 64), 0), gallery, k=0)
