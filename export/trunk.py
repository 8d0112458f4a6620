"""The frozen trunk shared by the trained backends (EfficientNet-Lite0 up to its head conv, ImageNet
weights), exported once; each backend adds a small head file after it."""
from __future__ import annotations

from sbir_core.config import MODELS_DIR
from sbir_core.nets.backbone import PooledFeatures, TRUNK_CHANNELS, Trunk
from sbir_core.train.features import PREPROCESS

from .common import export_onnx

FILE = f"trunk_lite0_{PREPROCESS.size}.onnx"
FEATURE_SHAPE = (TRUNK_CHANNELS, PREPROCESS.size // 32, PREPROCESS.size // 32)


def trunk() -> Trunk:
    return PooledFeatures().trunk.eval()


def export() -> float:
    """Write models/<FILE>; returns the parity error."""
    return export_onnx(trunk(), MODELS_DIR / FILE, PREPROCESS.size)
