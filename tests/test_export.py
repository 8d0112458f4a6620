"""Every shipped ONNX model matches the torch module it was exported from, on the same input."""
import importlib

import numpy as np
import onnxruntime as ort
import pytest
import torch

from export.all import EXPORTERS, exporter
from export.common import export_onnx, parity
from sbir_core.config import MODELS_DIR


def test_export_roundtrip_with_dynamic_batch(tmp_path):
    from sbir_core.nets.backbone import PooledFeatures
    module = PooledFeatures().eval()
    err = export_onnx(module, tmp_path / "m.onnx", 96)
    assert err < 1e-3
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    for b in (1, 5):                                          # dynamic batch axis
        assert sess.run(None, {"input": np.zeros((b, 3, 96, 96), np.float32)})[0].shape == (b, 1280)


@pytest.mark.parametrize("end", [13, 15, 16])
def test_trunk_split_anywhere_gives_the_whole_backbone(end):
    """Trunk(net, end) then Top(net, start=end) is the ImageNet backbone whatever the split: the
    features cached after blocks[:end] feed a sketch branch that trains blocks[end:]; export's
    shorter trunk file has the shape that branch expects."""
    from export import trunk as trunk_export
    from sbir_core.nets.backbone import PooledFeatures, Top, Trunk, lite0
    net = lite0().eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        whole = PooledFeatures(net).eval()(x)
        split = Top(net, end).eval()(Trunk(net, end).eval()(x))
    assert torch.allclose(whole, split, atol=1e-5)
    assert trunk_export.feature_shape(None if end == 16 else end)[0] == (320 if end == 16 else 192)


@pytest.mark.parametrize("name", EXPORTERS)
def test_shipped_models_match_torch(name):
    mod = exporter(name)
    if mod is None or not (MODELS_DIR / f"{name}.json").is_file():
        pytest.skip(f"{name} is not exported")
    torch.manual_seed(0)
    for key, (module, size) in mod.torch_modules().items():
        files = [MODELS_DIR / f for f in key.split("+")]
        x = torch.randn(2, 3, size, size)
        with torch.no_grad():
            ref = module.eval()(x)
        ref = (ref if isinstance(ref, (tuple, list)) else (ref,))
        out = [x.numpy()]
        for f in files:
            out = ort.InferenceSession(str(f), providers=["CPUExecutionProvider"]).run(None, {"input": out[0]})
        for o, r in zip(out, ref):
            assert np.abs(o - r.numpy()).max() < 1e-3, key


def test_ship_checkpoint_keeps_named_entries_in_fp16(tmp_path, monkeypatch):
    """The cgan checkpoint ships without optimiser state and in half precision; the weights load back
    into a float module."""
    from export import common
    monkeypatch.setattr(common, "CHECKPOINTS", tmp_path / "checkpoints")
    net = torch.nn.Linear(3, 2)
    torch.save({"G": net.state_dict(), "opt_g": {"state": {}}, "step": 7}, tmp_path / "run.pt")
    dst = common.ship_checkpoint(tmp_path / "run.pt", "demo", keep=("G", "step"), fp16=True)
    ck = torch.load(dst, weights_only=False)
    assert set(ck) == {"G", "step"} and ck["step"] == 7
    assert ck["G"]["weight"].dtype == torch.float16
    back = torch.nn.Linear(3, 2)
    back.load_state_dict(ck["G"])
    assert back.weight.dtype == torch.float32 and torch.allclose(back.weight, net.weight, atol=1e-3)


def test_int8_quantization_keeps_features_of_a_conv_net(tmp_path):
    """export.quantize on a small conv net: a QDQ model that runs in ONNX Runtime, with features close
    to the float model's on inputs it was not calibrated on (and not identical: it did quantize)."""
    import onnx
    from export.quantize import compare, quantize
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU6(),
                              torch.nn.Conv2d(16, 8, 3, stride=2, padding=1), torch.nn.ReLU6())
    export_onnx(net, tmp_path / "f.onnx", 32)
    rng = np.random.default_rng(0)
    quantize(tmp_path / "f.onnx", tmp_path / "q.onnx", rng.uniform(-1, 1, (16, 3, 32, 32)).astype(np.float32))
    ops = {n.op_type for n in onnx.load(str(tmp_path / "q.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    c = compare(tmp_path / "f.onnx", tmp_path / "q.onnx", rng.uniform(-1, 1, (8, 3, 32, 32)).astype(np.float32), runs=3)
    assert 0.97 < c["cosine_min"] < 1.0 - 1e-7


def test_backends_reading_the_classifier_name_its_shipped_files():
    """`instance` and `cgan` run the classifier's sketch chain for their class reading: after a
    classifier retrain that moves its trunk file, their metadata must name the new files, or serving
    would feed one trunk's features to another trunk's head."""
    import json
    cls = json.loads((MODELS_DIR / "classifier.json").read_text())
    inst = json.loads((MODELS_DIR / "instance.json").read_text())
    assert inst["sketch_model"][0] == cls["sketch_model"][0]
    assert inst["class_sketch_model"] == cls["sketch_model"][1]
    assert inst["photo_model"][0] in (cls["sketch_model"][0], cls["photo_model"][0])   # its photo head starts there
    cgan = json.loads((MODELS_DIR / "cgan.json").read_text())
    if "class_model" in cgan:
        assert cgan["class_model"] == cls["sketch_model"]
    for files in (cls["sketch_model"], inst["sketch_model"], cgan.get("class_model", [])):
        assert all((MODELS_DIR / f).is_file() for f in files)
