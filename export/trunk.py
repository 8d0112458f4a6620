"""The frozen trunk shared by the trained backends (EfficientNet-Lite0 up to its head conv, ImageNet
weights), exported once; each backend adds a small head file after it. A backend whose sketch branch
trains the trunk's last MBConv blocks serves its sketches through a shorter trunk, blocks[:end]."""
from __future__ import annotations

import torch

from sbir_core.config import MODELS_DIR
from sbir_core.nets.backbone import TRUNK_BLOCKS, TRUNK_CHANNELS, Trunk, lite0
from sbir_core.train.features import PREPROCESS, block_suffix

from .common import export_onnx


def file_name(end: int | None = None) -> str:
    return f"trunk_lite0_{PREPROCESS.size}{block_suffix(end)}.onnx"


FILE = file_name()
FEATURE_SHAPE = (TRUNK_CHANNELS, PREPROCESS.size // 32, PREPROCESS.size // 32)


def trained_part(end: int | None) -> str:
    """What a head after blocks[:end] trains, in words (for the model's description)."""
    return "head conv" if end is None else f"MBConv blocks {end}-{TRUNK_BLOCKS - 1} + head conv"


def trunk(end: int | None = None) -> Trunk:
    """Stem + MBConv blocks[:end] (all of them when None), ImageNet weights, eval mode."""
    return Trunk(lite0(), end).eval()


def feature_shape(end: int | None = None) -> tuple[int, int, int]:
    """(C, h, w) of the trunk's output for one preprocessed image."""
    if end is None:
        return FEATURE_SHAPE
    with torch.no_grad():
        return tuple(trunk(end)(torch.zeros(1, 3, PREPROCESS.size, PREPROCESS.size)).shape[1:])


def export(end: int | None = None) -> float:
    """Write models/<file_name(end)>; returns the parity error."""
    return export_onnx(trunk(end), MODELS_DIR / file_name(end), PREPROCESS.size)
