"""The `cgan` backend at serving time: the sketch becomes an imaginary photo (generator G), which
encoder E1 embeds; gallery photos are embedded by the frozen ImageNet encoder E2. ONNX Runtime only."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageFilter

from ..data.preprocess import Preprocess, photo_input
from ..index import l2_normalise
from .base import register_backend
from .embedding import EmbeddingBackend

DISPLAY_SIZE = 256     # the imaginary photo is shown at this side, next to the sketch


def imaginary_image(a: np.ndarray, size: int = DISPLAY_SIZE) -> Image.Image:
    """(3, R, R) in [0, 1] -> RGB image of side `size`: Lanczos upscaling and a light unsharp mask,
    so the small generated photo reads as a photo rather than as blocky pixels."""
    im = Image.fromarray((np.clip(a, 0, 1).transpose(1, 2, 0) * 255).round().astype(np.uint8))
    im = im.resize((size, size), Image.Resampling.LANCZOS)
    return im.filter(ImageFilter.UnsharpMask(radius=2, percent=60, threshold=2))


@register_backend("cgan")
class CGANBackend(EmbeddingBackend):
    """Guo et al. (ACM MM 2017): retrieval through the photo the person has in mind."""

    def __init__(self, threads: int | None = None, models_dir: Path | None = None):
        super().__init__(threads, models_dir)
        self.photo_preprocess = Preprocess.from_dict(self.meta["photo_preprocess"])   # 128 px, not the sketch's 64

    def photo_inputs(self, images: Sequence[Any]) -> np.ndarray:
        return np.stack([photo_input(im, self.photo_preprocess) for im in images])    # (B, 3, 128, 128)

    def encode_sketches(self, x: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        imaginary, emb = self.sketch_model(x)                                          # (B, 3, R, R), (B, D)
        return l2_normalise(emb).astype(np.float32), {"imaginary": imaginary_image(imaginary[0])}
