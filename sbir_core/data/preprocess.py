"""The one preprocessing path for sketches and photos, shared by training and serving.

Everything here is numpy + Pillow, so serving never needs torch. Each model's JSON carries the
`Preprocess` settings it was trained with, and serving rebuilds them from there.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 40_000_000      # larger images are refused before they are decoded
MAX_BYTES = 50 * 1024 * 1024
INK_THRESHOLD = 200          # grey value below which a pixel counts as ink (on white)
MIN_INK_FRACTION = 0.0002    # fewer ink pixels than this fraction of the image (and < 10) = blank


class ImageInputError(ValueError):
    """An image that cannot be used, with a message meant for the person who gave it."""


class BlankSketchError(ImageInputError):
    """The sketch has (almost) no strokes."""


@dataclass(frozen=True)
class Preprocess:
    """How a model's inputs are made; saved in the model's JSON and read back by serving."""
    size: int = 224
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    margin: float = 0.08          # white border around the sketch's ink, as a fraction of its side

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocess":
        return cls(size=int(d["size"]), mean=tuple(d["mean"]), std=tuple(d["std"]),
                   margin=float(d.get("margin", 0.08)))


def load_image(source: Any) -> Image.Image:
    """Open an image from a path, bytes, a file object, a numpy array or a PIL image, safely.

    Refuses non-images, truncated files and decompression bombs with an ImageInputError.
    """
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, np.ndarray):
        return _from_array(source)
    if isinstance(source, (str, Path)):
        try:
            data = Path(source).read_bytes()
        except OSError as e:
            raise ImageInputError(f"cannot read {source}: {e.strerror or e}") from None
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif hasattr(source, "read"):
        data = source.read()
    else:
        raise ImageInputError(f"expected an image, got {type(source).__name__}")
    if not data:
        raise ImageInputError("the file is empty")
    if len(data) > MAX_BYTES:
        raise ImageInputError(f"the file is too large ({len(data) // 2**20} MB; at most {MAX_BYTES // 2**20} MB)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise ImageInputError(f"the image is too large ({w}×{h} pixels; at most {MAX_PIXELS // 10**6} megapixels)")
            im.load()
    except ImageInputError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        if isinstance(e, UnidentifiedImageError):
            raise ImageInputError("this file is not an image Pillow can read (try PNG or JPEG)") from None
        raise ImageInputError("the image is too large to open safely") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageInputError(f"the image is damaged or truncated ({e})") from None
    return im


def _from_array(a: np.ndarray) -> Image.Image:
    if a.ndim not in (2, 3) or a.size == 0:
        raise ImageInputError(f"expected an image array (H, W[, C]), got shape {a.shape}")
    if a.dtype != np.uint8:
        a = a.astype(np.float64)
        hi = a.max() if a.max() > 1.0 else 1.0
        a = np.clip(a / hi * 255.0, 0, 255).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    return Image.fromarray(a)


@lru_cache(maxsize=4)
def _white(size: tuple[int, int]) -> Image.Image:
    """An opaque white ground, kept: a fresh one per canvas query costs more than the compositing."""
    return Image.new("RGBA", size, (255, 255, 255, 255))


def _to_rgb_on_white(im: Image.Image) -> Image.Image:
    """Any mode (palette, 16-bit, float, CMYK, with or without alpha) -> RGB, transparency on white."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.full_like(a, 255.0 if hi > 0 else 0.0)
        im = Image.fromarray(a.astype(np.uint8))
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return Image.alpha_composite(_white(im.size), im.convert("RGBA")).convert("RGB")
    return im.convert("RGB")


def sketch_grey(image: Any) -> np.ndarray:
    """Any sketch (canvas RGBA, upload, dataset file) -> uint8 (H, W), dark ink on white."""
    im = _to_rgb_on_white(load_image(image))
    g = np.asarray(im.convert("L"), dtype=np.uint8)
    # Light ink on a dark ground (Quick, Draw! bitmaps, chalkboard photos): flip it.
    border = np.concatenate([g[0], g[-1], g[:, 0], g[:, -1]])
    if np.median(border) < 128:
        g = 255 - g
    return g


def prepare_sketch(image: Any, size: int = 224, margin: float = 0.08) -> Image.Image:
    """Crop a sketch to its ink with a margin, pad to a square and resize: grey 'L' image of side `size`.

    Raises BlankSketchError when there is (almost) nothing drawn.
    """
    g = sketch_grey(image)
    ink = g < INK_THRESHOLD
    if np.count_nonzero(ink) < max(10, MIN_INK_FRACTION * g.size):
        raise BlankSketchError("the sketch is blank: draw something (a few strokes are enough)")
    ys, xs = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    y0, y1, x0, x1 = ys[0], ys[-1] + 1, xs[0], xs[-1] + 1
    crop = g[y0:y1, x0:x1]
    side = max(crop.shape)
    pad = int(round(side * margin)) + 1
    full = side + 2 * pad
    canvas = np.full((full, full), 255, dtype=np.uint8)
    oy, ox = (full - crop.shape[0]) // 2, (full - crop.shape[1]) // 2
    canvas[oy:oy + crop.shape[0], ox:ox + crop.shape[1]] = crop
    return Image.fromarray(canvas).resize((size, size), Image.Resampling.BOX if full > size else Image.Resampling.BILINEAR)


def prepare_photo(image: Any, size: int = 224) -> Image.Image:
    """A photo -> RGB square of side `size`: fitted inside, padded with white (nothing cut off)."""
    im = _to_rgb_on_white(load_image(image))
    im = ImageOps.pad(im, (size, size), method=Image.Resampling.BILINEAR, color=(255, 255, 255))
    return im


def to_tensor(im: Image.Image, pp: Preprocess) -> np.ndarray:
    """PIL image -> float32 (3, size, size), normalised with the model's mean/std."""
    lut = _normalise_lut(tuple(pp.mean), tuple(pp.std))                   # (3, 256): pixel value -> input
    if im.mode == "L":                                                    # sketches: one channel, looked up 3 times
        return lut[:, np.asarray(im)]
    a = np.asarray(im.convert("RGB"))
    return np.stack([lut[c][a[..., c]] for c in range(3)])                # (3, H, W)


@lru_cache(maxsize=8)
def _normalise_lut(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(v / 255 - mean) / std for every 8-bit value, in float32 as the models see it."""
    v = np.arange(256, dtype=np.float32)[None, :] / np.float32(255.0)
    return (v - np.asarray(mean, np.float32)[:, None]) / np.asarray(std, np.float32)[:, None]


def sketch_input(image: Any, pp: Preprocess) -> np.ndarray:
    """Sketch -> model input (3, size, size). The function both training and serving call."""
    return to_tensor(prepare_sketch(image, pp.size, pp.margin), pp)


def photo_input(image: Any, pp: Preprocess) -> np.ndarray:
    """Photo -> model input (3, size, size). The function both training and serving call."""
    return to_tensor(prepare_photo(image, pp.size), pp)
